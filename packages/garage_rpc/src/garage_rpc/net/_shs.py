"""The secret handshake, sans I/O (Secure Scuttlebutt's SHS v1; Garage uses the kuska crate).

Every TCP connection starts with it. Inputs: the network key ``K`` (``rpc_secret``, 32
bytes), each side's long-term Ed25519 key (``A`` client, ``B`` server) and a fresh X25519
ephemeral key per side (``a``, ``b``). The client must already know ``B_pub``: it dials a node
id, not just an address. Four messages::

    1. C→S  hmac(K, a_pub) ‖ a_pub                                            64 bytes
    2. S→C  hmac(K, b_pub) ‖ b_pub                                            64 bytes
    3. C→S  secretbox[sha256(K‖ab‖aB), nonce 0](sig_A ‖ A_pub)                112 bytes
            sig_A = sign_A(K ‖ B_pub ‖ sha256(ab))
    4. S→C  secretbox[sha256(K‖ab‖aB‖Ab), nonce 0](sig_B)                     80 bytes
            sig_B = sign_B(K ‖ sig_A ‖ A_pub ‖ sha256(ab))

with ``ab = x25519(a, b)``, ``aB = x25519(a, curve(B))``, ``Ab = x25519(curve(A), b)`` (each
side computes the same values from the halves it holds), ``hmac`` = HMAC-SHA-512 truncated
to 32 bytes (libsodium's ``crypto_auth``).

What each step proves, and who notices a failure first:

- Message 1 proves the client knows ``K``. A server seeing a bad HMAC fails *before
  answering*: a scanner without the network key learns nothing, not even that this is
  Garage.
- Message 3 can only be opened by the holder of ``B``'s secret key (``aB``), so a server
  that is not the node the client dialled fails there, again without answering; a good
  server learns and verifies ``A_pub``.
- Message 4 proves to the client that the server holds ``B`` and saw this very session.

Outcome, for the box stream a side *sends*: key ``sha256(sha256(sha256(K‖ab‖aB‖Ab)) ‖
receiver_pub)``, starting nonce = the first 24 bytes of the receiver's hello HMAC. The two
directions therefore never share a key.

The machines below take bytes and return bytes (h11's shape). A failure raises
:class:`HandshakeError` and leaves the machine failed for good; the driver then closes the
connection without sending anything more. The ephemeral secret is an input, so tests are
deterministic.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final, final

import nacl.bindings
import nacl.exceptions

from ._errors import HandshakeError
from ._keys import NodeId, verify_signature

if TYPE_CHECKING:
    from ._keys import NodeKey

__all__ = [
    "CLIENT_AUTH_LEN",
    "CLIENT_HELLO_LEN",
    "NETWORK_KEY_LEN",
    "SERVER_ACCEPT_LEN",
    "SERVER_HELLO_LEN",
    "HandshakeOutcome",
    "ShsClient",
    "ShsServer",
]

#: The network key is an HMAC key of crypto_auth's size.
NETWORK_KEY_LEN: Final = 32
#: Message sizes (see the module docstring).
CLIENT_HELLO_LEN: Final = 64
SERVER_HELLO_LEN: Final = 64
CLIENT_AUTH_LEN: Final = 112
SERVER_ACCEPT_LEN: Final = 80

_ZERO_NONCE: Final = bytes(24)
_NONCE_LEN: Final = 24
_KEY_LEN: Final = 32
_SIG_LEN: Final = 64


@dataclass(frozen=True, slots=True)
class HandshakeOutcome:
    """What a successful handshake yields: who the peer is, and the box-stream keys.

    Attributes:
        peer_id: the peer's verified long-term public key.
        encrypt_key, encrypt_nonce: for the box stream this side sends.
        decrypt_key, decrypt_nonce: for the box stream this side receives.
    """

    peer_id: NodeId
    encrypt_key: bytes = field(repr=False)
    encrypt_nonce: bytes = field(repr=False)
    decrypt_key: bytes = field(repr=False)
    decrypt_nonce: bytes = field(repr=False)


class _State(enum.Enum):
    START = enum.auto()
    WAIT_HELLO = enum.auto()
    WAIT_AUTH = enum.auto()
    WAIT_ACCEPT = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()


def _auth(key: bytes, message: bytes) -> bytes:
    """libsodium's crypto_auth: HMAC-SHA-512 truncated to 32 bytes."""
    return hmac.new(key, message, hashlib.sha512).digest()[:32]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _x25519(secret: bytes, public: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_scalarmult(secret, public)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        # libsodium refuses low-order points (all-zero shared secret): a malicious peer
        raise HandshakeError("peer sent an invalid ephemeral key") from None


def _ed_to_curve(public: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise HandshakeError("invalid long-term public key") from None


def _check_network_key(network_key: bytes) -> bytes:
    if len(network_key) != NETWORK_KEY_LEN:
        raise ValueError(
            f"the network key (rpc_secret) is {NETWORK_KEY_LEN} bytes, got {len(network_key)}"
        )
    return bytes(network_key)


def _check_ephemeral(secret: bytes) -> bytes:
    if len(secret) != _KEY_LEN:
        raise ValueError(f"an ephemeral X25519 secret is {_KEY_LEN} bytes, got {len(secret)}")
    return bytes(secret)


class _Machine:
    """Buffering shared by both sides: messages have fixed sizes, known per state."""

    _NEEDS: ClassVar[dict[_State, int]]

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _State.START

    @property
    def done(self) -> bool:
        """True once the handshake succeeded (see :attr:`outcome`)."""
        return self._state is _State.DONE

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the last handshake message (the start of the box stream)."""
        return bytes(self._buf) if self._state is _State.DONE else b""

    def receive_data(self, data: bytes) -> bytes:
        """Feeds received bytes; returns the bytes to send (possibly empty).

        Raises:
            HandshakeError: when the peer failed a check. The machine stays failed, and the
                driver must close the connection without sending anything more.
        """
        if self._state is _State.FAILED:
            raise HandshakeError("the handshake already failed")
        self._buf += data
        out = []
        while (need := self._NEEDS.get(self._state)) is not None and len(self._buf) >= need:
            message = bytes(self._buf[:need])
            del self._buf[:need]
            try:
                out.append(self._step(message))
            except BaseException:
                self._state = _State.FAILED
                raise
        return b"".join(out)

    def _step(self, message: bytes) -> bytes:
        raise NotImplementedError


@final
class ShsClient(_Machine):
    """The dialling side: proves it knows the network key and checks who answers.

    Usage: send :meth:`start`'s bytes, then feed received bytes to :meth:`receive_data` and
    send what it returns, until :attr:`done`.
    """

    _NEEDS: ClassVar = {_State.WAIT_HELLO: SERVER_HELLO_LEN, _State.WAIT_ACCEPT: SERVER_ACCEPT_LEN}

    def __init__(
        self, network_key: bytes, local_key: NodeKey, server_id: bytes, *, ephemeral_secret: bytes
    ) -> None:
        """
        Args:
            network_key: the cluster's 32-byte ``rpc_secret``.
            local_key: this node's long-term key.
            server_id: the id (public key) of the node we are dialling.
            ephemeral_secret: 32 random bytes (``os.urandom(32)``), used once.
        """
        super().__init__()
        self._k = _check_network_key(network_key)
        self._key = local_key
        self._server_pub = bytes(NodeId(server_id))
        self._eph_sec = _check_ephemeral(ephemeral_secret)
        self._eph_pub = nacl.bindings.crypto_scalarmult_base(self._eph_sec)
        self._hello_mac = _auth(self._k, self._eph_pub)
        self._outcome: HandshakeOutcome | None = None

    @property
    def outcome(self) -> HandshakeOutcome:
        """The session keys; only once :attr:`done`."""
        if self._outcome is None:
            raise RuntimeError("the handshake is not finished")
        return self._outcome

    def start(self) -> bytes:
        """Message 1, the client hello."""
        if self._state is not _State.START:
            raise RuntimeError("start() was already called")
        self._state = _State.WAIT_HELLO
        return self._hello_mac + self._eph_pub

    def _step(self, message: bytes) -> bytes:
        if self._state is _State.WAIT_HELLO:
            return self._on_server_hello(message)
        return self._on_server_accept(message)

    def _on_server_hello(self, message: bytes) -> bytes:
        mac, b_pub = message[:32], message[32:]
        if not hmac.compare_digest(mac, _auth(self._k, b_pub)):
            raise HandshakeError("the server does not use our network key (rpc_secret)")
        self._server_hello_mac = mac
        self._b_pub = b_pub
        self._ab = _x25519(self._eph_sec, b_pub)
        self._ab_hash = _sha256(self._ab)
        self._a_big_b = _x25519(self._eph_sec, _ed_to_curve(self._server_pub))
        signature = self._key.sign(self._k + self._server_pub + self._ab_hash)
        self._auth_plain = signature + bytes(self._key.node_id)
        box_key = _sha256(self._k + self._ab + self._a_big_b)
        self._state = _State.WAIT_ACCEPT
        return nacl.bindings.crypto_secretbox_easy(self._auth_plain, _ZERO_NONCE, box_key)

    def _on_server_accept(self, message: bytes) -> bytes:
        big_a_b = _x25519(self._key.curve25519_secret(), self._b_pub)
        final_key = _sha256(self._k + self._ab + self._a_big_b + big_a_b)
        try:
            sig_b = nacl.bindings.crypto_secretbox_open_easy(message, _ZERO_NONCE, final_key)
        except nacl.exceptions.CryptoError:
            raise HandshakeError(
                "the server could not prove it holds the key of the node we dialled"
            ) from None
        signed = self._k + self._auth_plain + self._ab_hash
        if not verify_signature(self._server_pub, signed, sig_b):
            raise HandshakeError("the server's signature does not verify")
        base = _sha256(final_key)
        self._outcome = HandshakeOutcome(
            peer_id=NodeId(self._server_pub),
            encrypt_key=_sha256(base + self._server_pub),
            encrypt_nonce=self._server_hello_mac[:_NONCE_LEN],
            decrypt_key=_sha256(base + bytes(self._key.node_id)),
            decrypt_nonce=self._hello_mac[:_NONCE_LEN],
        )
        self._state = _State.DONE
        return b""


@final
class ShsServer(_Machine):
    """The answering side: checks the network key, then learns and verifies the client.

    Usage: feed received bytes to :meth:`receive_data` and send what it returns, until
    :attr:`done`. The client's id is ``outcome.peer_id``.
    """

    _NEEDS: ClassVar = {_State.START: CLIENT_HELLO_LEN, _State.WAIT_AUTH: CLIENT_AUTH_LEN}

    def __init__(self, network_key: bytes, local_key: NodeKey, *, ephemeral_secret: bytes) -> None:
        """
        Args:
            network_key: the cluster's 32-byte ``rpc_secret``.
            local_key: this node's long-term key (the one clients dial).
            ephemeral_secret: 32 random bytes (``os.urandom(32)``), used once.
        """
        super().__init__()
        self._k = _check_network_key(network_key)
        self._key = local_key
        self._eph_sec = _check_ephemeral(ephemeral_secret)
        self._eph_pub = nacl.bindings.crypto_scalarmult_base(self._eph_sec)
        self._hello_mac = _auth(self._k, self._eph_pub)
        self._outcome: HandshakeOutcome | None = None

    @property
    def outcome(self) -> HandshakeOutcome:
        """The session keys and the client's id; only once :attr:`done`."""
        if self._outcome is None:
            raise RuntimeError("the handshake is not finished")
        return self._outcome

    def _step(self, message: bytes) -> bytes:
        if self._state is _State.START:
            return self._on_client_hello(message)
        return self._on_client_auth(message)

    def _on_client_hello(self, message: bytes) -> bytes:
        mac, a_pub = message[:32], message[32:]
        if not hmac.compare_digest(mac, _auth(self._k, a_pub)):
            raise HandshakeError("the client does not use our network key (rpc_secret)")
        self._client_hello_mac = mac
        self._a_pub = a_pub
        self._ab = _x25519(self._eph_sec, a_pub)
        self._ab_hash = _sha256(self._ab)
        self._a_big_b = _x25519(self._key.curve25519_secret(), a_pub)
        self._state = _State.WAIT_AUTH
        return self._hello_mac + self._eph_pub

    def _on_client_auth(self, message: bytes) -> bytes:
        box_key = _sha256(self._k + self._ab + self._a_big_b)
        try:
            plain = nacl.bindings.crypto_secretbox_open_easy(message, _ZERO_NONCE, box_key)
        except nacl.exceptions.CryptoError:
            raise HandshakeError(
                "the client's authentication does not open: it dialled another node id"
            ) from None
        sig_a, client_pub = plain[:_SIG_LEN], plain[_SIG_LEN:]
        own_pub = bytes(self._key.node_id)
        if not verify_signature(client_pub, self._k + own_pub + self._ab_hash, sig_a):
            raise HandshakeError("the client's signature does not verify")
        big_a_b = _x25519(self._eph_sec, _ed_to_curve(client_pub))
        final_key = _sha256(self._k + self._ab + self._a_big_b + big_a_b)
        sig_b = self._key.sign(self._k + plain + self._ab_hash)
        base = _sha256(final_key)
        self._outcome = HandshakeOutcome(
            peer_id=NodeId(client_pub),
            encrypt_key=_sha256(base + client_pub),
            encrypt_nonce=self._client_hello_mac[:_NONCE_LEN],
            decrypt_key=_sha256(base + own_pub),
            decrypt_nonce=self._hello_mac[:_NONCE_LEN],
        )
        self._state = _State.DONE
        return nacl.bindings.crypto_secretbox_easy(sig_b, _ZERO_NONCE, final_key)
