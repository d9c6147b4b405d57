"""The PollRange "seen marker": which items of a range a client has already seen.

Garage: src/model/k2v/seen.rs. A marker is a vector clock ``vector_clock`` — for each node
``n``, every value ``n`` wrote with a time at or below ``vector_clock[n]`` has been seen —
plus per-item vector clocks ``items[sort_key]`` for the items seen beyond it. An item is
*new* when its causal context is newer than both.

After a poll, the responding node ``n``'s entry of the global clock is raised to the
highest time of ``n`` among the items it returned: node ``n`` returns every item of the
range it holds that is new, and it holds every value it wrote itself, so nothing of
``n``'s up to that time is left unseen. Per-item clocks then only remain for items whose
context is still newer than the global clock (:meth:`RangeSeenMarker.canonicalize`).

Wire form (Garage's): msgpack ``{vector_clock: {node: t}, items: {sort_key: {node: t}}}``,
one zstd frame, base64 *standard* (with padding). A marker is opaque to clients and only read
back by the cluster that made it. Markers of earlier versions of this package were zlib
streams; they are short-lived (one poll to the next), so they are not decoded but refused
with a 400 that says so, and the client starts again without a marker.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

import zstandard

from garage_model.helper import BadRequestError
from garage_util.encode import pack, unpack
from garage_util.errors import DecodeError

from ._causality import vclock_gt, vclock_max

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._item_table import K2VItem
    from ._sub import PollRange

__all__ = ["MAX_SEEN_MARKER_BYTES", "InvalidSeenMarker", "RangeSeenMarker"]

#: Largest decoded marker accepted: a marker holds at most a few vector clocks per item of
#: a range, far below this; the bound stops a small token from inflating without limit.
MAX_SEEN_MARKER_BYTES: Final = 16 * 2**20

#: zstd level: Garage's (``zstd::DEFAULT_COMPRESSION_LEVEL``); markers are small and made
#: per request, so speed matters more than ratio.
_ZSTD_LEVEL: Final = 3
#: Compressed bytes fed to the decoder at a time. One input byte can inflate to much more
#: (a run-length block of 4 bytes is up to 128 KiB), so the size limit is checked after
#: each small feed: a token can overshoot :data:`MAX_SEEN_MARKER_BYTES` by about 2 MiB at
#: most before it is refused.
_FEED_BYTES: Final = 64
#: Every zstd frame starts with this (RFC 8878, section 3.1.1).
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"


class InvalidSeenMarker(BadRequestError):
    """Raised when a PollRange seen marker is not one this cluster made (not base64, not
    one zstd frame, not the marker's msgpack shape, or too large), or was made by an
    earlier version of this package (a zlib stream)."""


@dataclass(frozen=True, slots=True)
class _Wire:
    vector_clock: dict[int, int]
    items: dict[str, dict[int, int]]


@final
@dataclass(frozen=True, slots=True)
class RangeSeenMarker:
    """What a PollRange client has seen of a range (immutable: methods return new markers).

    Attributes:
        vector_clock: per node, the time up to which everything it wrote has been seen.
        items: per sort key, the vector clock of the item as seen beyond ``vector_clock``.
    """

    vector_clock: Mapping[int, int] = field(default_factory=dict)
    items: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    def restrict(self, range: PollRange) -> RangeSeenMarker:
        """The marker without per-item clocks outside ``range``."""
        items = {sk: vc for sk, vc in self.items.items() if range.matches_key(sk)}
        return RangeSeenMarker(self.vector_clock, items)

    def mark_seen_node_items(self, node: int, items: Iterable[K2VItem]) -> RangeSeenMarker:
        """The marker once ``items``, returned by node ``node`` (k2v node id), are seen."""
        clock = dict(self.vector_clock)
        per_item = {sk: dict(vc) for sk, vc in self.items.items()}
        for item in items:
            cc = item.causal_context().vector_clock
            ts = cc.get(node)
            if ts is not None:
                clock[node] = max(clock.get(node, 0), ts)
            if vclock_gt(cc, clock):
                seen = per_item.get(item.sk)
                per_item[item.sk] = dict(cc) if seen is None else vclock_max(seen, cc)
        return RangeSeenMarker(clock, per_item)

    def canonicalize(self) -> RangeSeenMarker:
        """The marker without the per-item clocks the global clock already covers."""
        clock = self.vector_clock
        return RangeSeenMarker(
            clock, {sk: vc for sk, vc in self.items.items() if vclock_gt(vc, clock)}
        )

    def is_new_item(self, item: K2VItem) -> bool:
        """True when ``item`` has something this marker has not seen."""
        cc = item.causal_context().vector_clock
        if not vclock_gt(cc, self.vector_clock):
            return False
        seen = self.items.get(item.sk)
        return seen is None or vclock_gt(cc, seen)

    def encode(self) -> str:
        """The canonical marker as a token (see the module docstring)."""
        marker = self.canonicalize()
        wire = _Wire(dict(marker.vector_clock), {sk: dict(vc) for sk, vc in marker.items.items()})
        frame = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(pack(wire))
        return base64.b64encode(frame).decode("ascii")

    @classmethod
    def decode(cls, token: str) -> RangeSeenMarker:
        """Parses a token made by :meth:`encode`.

        Raises:
            InvalidSeenMarker: the token is not a seen marker, or is a zlib marker of an
                earlier version.
        """
        try:
            compressed = base64.b64decode(token.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise InvalidSeenMarker("invalid seen marker: not base64") from None
        if not compressed.startswith(_ZSTD_MAGIC):
            if _is_zlib(compressed):
                raise InvalidSeenMarker(
                    "seen marker from an earlier version of the server (zlib, not zstd): "
                    "start again with a PollRange without seenMarker"
                )
            raise InvalidSeenMarker("invalid seen marker: not a zstd frame")
        try:
            wire = unpack(_Wire, _inflate(compressed))
        except (zstandard.ZstdError, DecodeError):
            raise InvalidSeenMarker("invalid seen marker") from None
        return cls(wire.vector_clock, wire.items)


def _inflate(frame: bytes) -> bytes:
    """Decodes exactly one zstd frame of at most :data:`MAX_SEEN_MARKER_BYTES`. Frames
    without a content size (Rust's streaming encoder writes those) decode too.

    Raises:
        InvalidSeenMarker: the frame is truncated, followed by other bytes, or too large.
        zstandard.ZstdError: the frame is corrupt.
    """
    inflater = zstandard.ZstdDecompressor().decompressobj()
    out = bytearray()
    fed = 0
    while fed < len(frame) and not inflater.eof:
        out += inflater.decompress(frame[fed : fed + _FEED_BYTES])
        fed += _FEED_BYTES
        if len(out) > MAX_SEEN_MARKER_BYTES:
            raise InvalidSeenMarker("invalid seen marker: too large")
    if not inflater.eof:
        raise InvalidSeenMarker("invalid seen marker: truncated")
    if inflater.unused_data or fed < len(frame):
        raise InvalidSeenMarker("invalid seen marker: bytes after the zstd frame")
    return bytes(out)


def _is_zlib(data: bytes) -> bool:
    """True when ``data`` starts with a zlib header (RFC 1950: deflate with a window of at
    most 32 KiB, and a header checksum), as the markers of earlier versions did."""
    return (
        len(data) >= 2
        and data[0] & 0x0F == 8
        and data[0] >> 4 <= 7
        and ((data[0] << 8) | data[1]) % 31 == 0
    )
