"""The box stream, sans I/O: every byte after the handshake, encrypted and authenticated.

One box stream per direction, with the key and starting nonce from the handshake (see
:mod:`._shs`). The plaintext byte stream is cut into packets of at most
:data:`MAX_BODY_LEN` bytes; each packet is::

    header: secretbox[nonce n](u16 BE body_len ‖ 16-byte MAC of the body)    34 bytes
    body:   the body encrypted with nonce n + 1, without its MAC              body_len bytes

and the next packet uses nonce n + 2. The nonce is a 192-bit big-endian counter, so a
replayed, dropped, reordered or altered packet fails authentication: any such failure is
a :class:`ProtocolError`, and the connection must be dropped (no resynchronisation is
possible, nor wanted). Reading the header first tells the receiver the body length
without trusting any unauthenticated byte.

The "goodbye" packet is a header whose plaintext is 18 zero bytes: the sender will send
nothing more. Any byte after it is an error. A connection that ends without a goodbye was
cut (a crash, a reset, an attacker).
"""

from __future__ import annotations

from typing import Final, final

import nacl.bindings
import nacl.exceptions

from ._errors import ProtocolError

__all__ = ["HEADER_LEN", "MAX_BODY_LEN", "BoxDecoder", "BoxEncoder"]

#: Largest body per packet, as in SHS box streams (kuska, secret-handshake).
MAX_BODY_LEN: Final = 4096
_MAC_LEN: Final = 16
_HEADER_PLAIN_LEN: Final = 2 + _MAC_LEN
#: Encrypted header: the 18-byte plaintext plus its own MAC.
HEADER_LEN: Final = _HEADER_PLAIN_LEN + _MAC_LEN
_GOODBYE: Final = bytes(_HEADER_PLAIN_LEN)
_NONCE_LEN: Final = 24
_NONCE_MOD: Final = 1 << (8 * _NONCE_LEN)

_secretbox = nacl.bindings.crypto_secretbox_easy
_secretbox_open = nacl.bindings.crypto_secretbox_open_easy


def _check(key: bytes, nonce: bytes) -> tuple[bytes, int]:
    if len(key) != 32 or len(nonce) != _NONCE_LEN:
        raise ValueError("a box stream needs a 32-byte key and a 24-byte nonce")
    return bytes(key), int.from_bytes(nonce, "big")


@final
class BoxEncoder:
    """Encrypts the outgoing direction of a box stream."""

    __slots__ = ("_closed", "_key", "_nonce")

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._key, self._nonce = _check(key, nonce)
        self._closed = False

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypts ``data`` as packets of at most :data:`MAX_BODY_LEN` bytes each.

        Raises:
            RuntimeError: after :meth:`goodbye`.
        """
        if self._closed:
            raise RuntimeError("the box stream was closed with goodbye()")
        key, n = self._key, self._nonce
        src = data if isinstance(data, bytes) else bytes(data)
        out: list[bytes] = []
        append = out.append
        for start in range(0, len(src), MAX_BODY_LEN):
            body = src[start : start + MAX_BODY_LEN]
            boxed = _secretbox(body, ((n + 1) % _NONCE_MOD).to_bytes(_NONCE_LEN, "big"), key)
            header = len(body).to_bytes(2, "big") + boxed[:_MAC_LEN]
            append(_secretbox(header, n.to_bytes(_NONCE_LEN, "big"), key))
            append(boxed[_MAC_LEN:])
            n = (n + 2) % _NONCE_MOD
        self._nonce = n
        return b"".join(out)

    def goodbye(self) -> bytes:
        """The goodbye packet; nothing can be encrypted afterwards."""
        self._closed = True
        return _secretbox(_GOODBYE, self._nonce.to_bytes(_NONCE_LEN, "big"), self._key)


@final
class BoxDecoder:
    """Decrypts the incoming direction of a box stream.

    Feed received bytes with :meth:`receive_data`, take plaintext with :meth:`read`.
    """

    __slots__ = ("_body_len", "_body_mac", "_buf", "_closed", "_key", "_nonce", "_pos")

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._key, self._nonce = _check(key, nonce)
        self._buf = bytearray()
        self._pos = 0
        self._body_len = -1  # -1: waiting for a header
        self._body_mac = b""
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the peer's goodbye packet was read."""
        return self._closed

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Appends received bytes (any amount, any boundaries)."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def read(self) -> bytes:
        """Decrypts every complete packet received so far; returns their plaintext.

        Raises:
            ProtocolError: when a packet fails authentication, or bytes follow a goodbye.
        """
        buf, pos, n, key = self._buf, self._pos, self._nonce, self._key
        end = len(buf)
        out: list[bytes] = []
        try:
            while True:
                if self._closed:
                    if pos < end:
                        raise ProtocolError("box stream: data after the goodbye packet")
                    break
                if self._body_len < 0:
                    if end - pos < HEADER_LEN:
                        break
                    try:
                        header = _secretbox_open(
                            bytes(buf[pos : pos + HEADER_LEN]), n.to_bytes(_NONCE_LEN, "big"), key
                        )
                    except nacl.exceptions.CryptoError:
                        raise ProtocolError(
                            "box stream: a packet header failed authentication (tampered, "
                            "replayed or reordered data)"
                        ) from None
                    pos += HEADER_LEN
                    if header == _GOODBYE:
                        self._closed = True
                        continue
                    body_len = int.from_bytes(header[:2], "big")
                    if body_len == 0 or body_len > MAX_BODY_LEN:
                        raise ProtocolError(f"box stream: invalid body length {body_len}")
                    self._body_len = body_len
                    self._body_mac = header[2:]
                body_len = self._body_len
                if end - pos < body_len:
                    break
                try:
                    plain = _secretbox_open(
                        self._body_mac + buf[pos : pos + body_len],
                        ((n + 1) % _NONCE_MOD).to_bytes(_NONCE_LEN, "big"),
                        key,
                    )
                except nacl.exceptions.CryptoError:
                    raise ProtocolError(
                        "box stream: a packet body failed authentication (tampered data)"
                    ) from None
                pos += body_len
                n = (n + 2) % _NONCE_MOD
                self._body_len = -1
                out.append(plain)
        finally:
            self._pos = pos
            self._nonce = n
        return b"".join(out)
