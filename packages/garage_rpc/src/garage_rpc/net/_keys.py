"""Node keys: the Ed25519 identity of a node, and where it is kept (Garage: src/rpc/system.rs
``gen_node_key``).

A node's id *is* its Ed25519 public key (32 bytes, :data:`NodeId`). Peers dial
``<hex id>@host:port``, and the secret handshake proves that whoever answers holds the
matching secret key, so the id cannot be spoofed.

On disk (``metadata_dir``), as Garage does:

- ``node_key``: 64 bytes, libsodium's secret key layout ``seed ‖ public key``, mode 0600;
- ``node_key.pub``: the 32-byte public key, for tools.

Invariants: the key file is written atomically (temp file, fsync, rename, fsync of the
directory), so a crash during first start leaves either no key or a whole key, never half a
key. A key file that group or others can read is refused, not silently fixed: the operator
must know that the secret may have leaked.
"""

from __future__ import annotations

import hmac
import logging
import os
import stat
from pathlib import Path
from typing import Final, Self, TypeAlias, final

import nacl.bindings
import nacl.exceptions

from garage_util.data import FixedBytes32
from garage_util.persist import write_atomically

from ._errors import NodeKeyError

__all__ = ["NODE_KEY_FILE", "NODE_PUB_FILE", "NodeId", "NodeKey", "verify_signature"]

logger = logging.getLogger(__name__)

#: A node's identifier: its Ed25519 public key.
NodeId: TypeAlias = FixedBytes32

#: File names in metadata_dir, as in Garage.
NODE_KEY_FILE: Final = "node_key"
NODE_PUB_FILE: Final = "node_key.pub"

_SEED_LEN: Final = 32
_SECRET_LEN: Final = 64  # seed ‖ public key: libsodium's crypto_sign secret key
_PUBLIC_LEN: Final = 32
_SIGNATURE_LEN: Final = 64


@final
class NodeKey:
    """The Ed25519 key pair that identifies a node.

    Build one with :meth:`generate` (tests, throw-away CLI identities) or
    :meth:`load_or_create` (a daemon). The secret never appears in ``repr``.
    """

    __slots__ = ("_node_id", "_secret")

    def __init__(self, seed: bytes) -> None:
        """Derives the key pair from a 32-byte seed.

        Raises:
            ValueError: when ``seed`` is not 32 bytes.
        """
        if len(seed) != _SEED_LEN:
            raise ValueError(f"an Ed25519 seed is {_SEED_LEN} bytes, got {len(seed)}")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(bytes(seed))
        self._secret = secret
        self._node_id = NodeId(public)

    @classmethod
    def generate(cls) -> Self:
        """A fresh random key (from the OS's CSPRNG)."""
        return cls(os.urandom(_SEED_LEN))

    @classmethod
    def from_secret_bytes(cls, data: bytes) -> Self:
        """Loads the 64-byte ``seed ‖ public key`` form (the content of ``node_key``).

        Raises:
            ValueError: when ``data`` is not 64 bytes or its public half does not match
                its seed.
        """
        if len(data) != _SECRET_LEN:
            raise ValueError(f"a node secret key is {_SECRET_LEN} bytes, got {len(data)}")
        key = cls(data[:_SEED_LEN])
        if not hmac.compare_digest(bytes(key._node_id), data[_SEED_LEN:]):
            raise ValueError("the public half of the secret key does not match its seed")
        return key

    @classmethod
    def load_or_create(cls, metadata_dir: str | os.PathLike[str]) -> Self:
        """Loads ``metadata_dir/node_key``, creating it (and the directory) on first start.

        This does blocking file I/O: call it at startup, or through
        ``anyio.to_thread.run_sync`` from async code.

        Raises:
            NodeKeyError: when the key file exists but is readable by group or others, has
                the wrong size or content, or disagrees with ``node_key.pub``.
            OSError: when the directory or files cannot be read or written.
        """
        directory = Path(metadata_dir)
        key_path = directory / NODE_KEY_FILE
        pub_path = directory / NODE_PUB_FILE
        if key_path.exists():
            key = cls._load(key_path)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            key = cls.generate()
            write_atomically(key_path, key.secret_bytes(), mode=0o600)
            logger.info("generated a new node key in %s: node id %s", key_path, key.node_id)
        if pub_path.exists():
            pub = pub_path.read_bytes()
            if pub != key.node_id:
                raise NodeKeyError(
                    f"{pub_path} does not hold the public key of {key_path}; remove it (it is "
                    "derived from the key file and will be written again) or restore the "
                    "matching key file"
                )
        else:
            write_atomically(pub_path, bytes(key.node_id), mode=0o644)
        return key

    @classmethod
    def _load(cls, key_path: Path) -> Self:
        mode = stat.S_IMODE(key_path.stat().st_mode)
        if mode & 0o077:
            raise NodeKeyError(
                f"{key_path} has permissions {mode:04o}: the node secret key must not be "
                f"accessible to group or others; run `chmod 600 {key_path}` (and consider the "
                "key compromised if others could read it)"
            )
        data = key_path.read_bytes()
        if len(data) != _SECRET_LEN:
            raise NodeKeyError(
                f"{key_path} is {len(data)} bytes long, a node key is {_SECRET_LEN} bytes: the "
                "file is damaged or not a node key"
            )
        try:
            return cls.from_secret_bytes(data)
        except ValueError as exc:
            raise NodeKeyError(f"{key_path} is not a valid node key: {exc}") from None

    @property
    def node_id(self) -> NodeId:
        """This node's id (the public key)."""
        return self._node_id

    def secret_bytes(self) -> bytes:
        """The 64-byte ``seed ‖ public key`` form, as stored in ``node_key``."""
        return self._secret

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return nacl.bindings.crypto_sign(message, self._secret)[:_SIGNATURE_LEN]

    def curve25519_secret(self) -> bytes:
        """The X25519 form of the secret key (used by the secret handshake)."""
        return nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(self._secret)

    def __repr__(self) -> str:
        return f"NodeKey(node_id={self._node_id.short_hex()}…)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeKey):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self._node_id)


def verify_signature(node_id: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``node_id``'s Ed25519 signature of ``message``."""
    if len(signature) != _SIGNATURE_LEN or len(node_id) != _PUBLIC_LEN:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, bytes(node_id))
    except (nacl.exceptions.CryptoError, ValueError):
        return False
    return True
