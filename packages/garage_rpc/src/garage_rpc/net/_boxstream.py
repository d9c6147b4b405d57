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

**Speed.** Packets are small (4 KiB), so the cost of a box stream is the fixed cost per
secretbox call, not the cipher: this module calls libsodium's ``crypto_secretbox_easy``
and ``crypto_secretbox_open_easy`` directly (PyNaCl's cffi library, which releases the
GIL around each call), on buffers laid out so that no byte is copied around the crypto.
A secretbox is ``MAC(16) ‖ ciphertext``, and libsodium works in place, so packet ``i`` is
built inside the output buffer at offset ``p``::

    p      p+16  p+18         p+34                 (offsets in the wire packet)
    |      |     | body MAC   | body ciphertext    <- 1. seal the body at p+18
    |      | len | body MAC   |                    <- 2. write len at p+16
    | hMAC | enc(len ‖ body MAC)|                  <- 3. seal p+16..p+34 in place at p

and opened the same way in the receive buffer: opening the header in place at ``p`` puts
``len ‖ body MAC`` at ``p+16``, right before the body ciphertext, which then opens in
place as one secretbox at ``p+18``. Whole batches (everything one socket read returned,
everything one send writes) go through one call of :meth:`BoxDecoder.read_into` or
:meth:`BoxEncoder.encrypt`.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias, final

import nacl._sodium  # type: ignore[import-not-found]  # PyNaCl's cffi library, untyped
import nacl.bindings  # initialises libsodium (sodium_init) on import

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
_NONCE_MASK: Final = (1 << (8 * _NONCE_LEN)) - 1
#: Where the header's plaintext (``len ‖ body MAC``) sits in a packet, once opened.
_LEN_AT: Final = _MAC_LEN
_BODY_MAC_AT: Final = _LEN_AT + 2
_UCHARS: Final = "unsigned char[]"

_Buffer: TypeAlias = bytes | bytearray | memoryview

_seal: Any = nacl._sodium.lib.crypto_secretbox_easy
_unseal: Any = nacl._sodium.lib.crypto_secretbox_open_easy
_from_buffer: Any = nacl._sodium.ffi.from_buffer


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

    def encrypt(self, data: _Buffer) -> bytearray:
        """Encrypts ``data`` as packets of at most :data:`MAX_BODY_LEN` bytes each.

        Returns a new buffer (the caller owns it): ``len(data)`` bytes plus
        :data:`HEADER_LEN` per packet.

        Raises:
            RuntimeError: after :meth:`goodbye`.
        """
        if self._closed:
            raise RuntimeError("the box stream was closed with goodbye()")
        with memoryview(data) as view, view.cast("B") as src_view:
            size = src_view.nbytes
            if not size:
                return bytearray()
            out = bytearray(size + -(-size // MAX_BODY_LEN) * HEADER_LEN)
            key, n, seal = self._key, self._nonce, _seal
            # Constants as locals: this loop runs once per 4 KiB.
            mask, max_body, header_len = _NONCE_MASK, MAX_BODY_LEN, HEADER_LEN
            nonce_len = _NONCE_LEN
            len_at, mac_at, header_plain = _LEN_AT, _BODY_MAC_AT, _HEADER_PLAIN_LEN
            with _from_buffer(_UCHARS, out) as dst, _from_buffer(_UCHARS, src_view) as src:
                pos = 0
                for start in range(0, size, max_body):
                    body_len = size - start
                    if body_len > max_body:
                        body_len = max_body
                    body_nonce = ((n + 1) & mask).to_bytes(nonce_len, "big")
                    seal(dst + (pos + mac_at), src + start, body_len, body_nonce, key)
                    out[pos + len_at] = body_len >> 8
                    out[pos + len_at + 1] = body_len & 0xFF
                    # In place: the 18 bytes at pos+16 become the 34-byte box at pos.
                    seal(
                        dst + pos,
                        dst + (pos + len_at),
                        header_plain,
                        n.to_bytes(nonce_len, "big"),
                        key,
                    )
                    pos += header_len + body_len
                    n = (n + 2) & mask
        self._nonce = n
        return out

    def goodbye(self) -> bytes:
        """The goodbye packet; nothing can be encrypted afterwards."""
        self._closed = True
        box = bytearray(HEADER_LEN)
        with _from_buffer(_UCHARS, box) as dst:
            _seal(
                dst, _GOODBYE, _HEADER_PLAIN_LEN, self._nonce.to_bytes(_NONCE_LEN, "big"), self._key
            )
        return bytes(box)


@final
class BoxDecoder:
    """Decrypts the incoming direction of a box stream.

    Feed received bytes with :meth:`receive_data`, take plaintext with :meth:`read_into`
    (or :meth:`read`). Packets are opened in place in the receive buffer.
    """

    __slots__ = ("_body_len", "_buf", "_closed", "_key", "_nonce", "_pos")

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._key, self._nonce = _check(key, nonce)
        self._buf = bytearray()
        self._pos = 0
        #: -1: waiting for a header; else the body length of the packet at _pos, whose
        #: header was opened in place (its plaintext is at _pos + 16).
        self._body_len = -1
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the peer's goodbye packet was read."""
        return self._closed

    def receive_data(self, data: _Buffer) -> None:
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
        out = bytearray()
        self.read_into(out)
        return bytes(out)

    def read_into(self, out: bytearray) -> int:
        """Decrypts every complete packet received so far, appending the plaintext to
        ``out`` (any buffer but this decoder's own); returns how many bytes were appended.

        Raises:
            ProtocolError: when a packet fails authentication, or bytes follow a goodbye.
        """
        buf, pos = self._buf, self._pos
        end = len(buf)
        if self._closed:
            if pos < end:
                raise ProtocolError("box stream: data after the goodbye packet")
            return 0
        body_len = self._body_len
        if end - pos < (HEADER_LEN if body_len < 0 else HEADER_LEN + body_len):
            return 0
        before = len(out)
        n, key, unseal = self._nonce, self._key, _unseal
        # Constants as locals: this loop runs once per 4 KiB.
        mask, max_body, header_len = _NONCE_MASK, MAX_BODY_LEN, HEADER_LEN
        nonce_len = _NONCE_LEN
        len_at, mac_at, mac_len = _LEN_AT, _BODY_MAC_AT, _MAC_LEN
        try:
            with (
                _from_buffer(_UCHARS, buf, require_writable=True) as ptr,
                memoryview(buf) as view,
            ):
                while True:
                    if body_len < 0:
                        if end - pos < header_len:
                            break
                        # In place: the 34-byte box at pos opens to 18 bytes at pos+16.
                        if unseal(
                            ptr + (pos + len_at),
                            ptr + pos,
                            header_len,
                            n.to_bytes(nonce_len, "big"),
                            key,
                        ):
                            raise ProtocolError(
                                "box stream: a packet header failed authentication "
                                "(tampered, replayed or reordered data)"
                            )
                        body_len = (buf[pos + len_at] << 8) | buf[pos + len_at + 1]
                        if body_len == 0 and view[pos + len_at : pos + header_len] == _GOODBYE:
                            pos += header_len
                            body_len = -1
                            self._closed = True
                            if pos < end:
                                raise ProtocolError("box stream: data after the goodbye packet")
                            break
                        if body_len == 0 or body_len > max_body:
                            bad, body_len = body_len, -1
                            raise ProtocolError(f"box stream: invalid body length {bad}")
                    body = pos + header_len
                    if end - body < body_len:
                        break
                    # The body MAC (at pos+18) precedes the ciphertext: one secretbox,
                    # opened in place.
                    body_nonce = ((n + 1) & mask).to_bytes(nonce_len, "big")
                    if unseal(
                        ptr + body, ptr + (pos + mac_at), mac_len + body_len, body_nonce, key
                    ):
                        raise ProtocolError(
                            "box stream: a packet body failed authentication (tampered data)"
                        )
                    out += view[body : body + body_len]
                    pos = body + body_len
                    n = (n + 2) & mask
                    body_len = -1
        finally:
            self._pos = pos
            self._nonce = n
            self._body_len = body_len
        return len(out) - before
