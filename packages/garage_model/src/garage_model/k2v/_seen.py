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

Wire form: msgpack ``{vector_clock: {node: t}, items: {sort_key: {node: t}}}``, compressed,
base64 *standard* (with padding). Garage compresses with zstd; zstandard is not a
dependency of this package, so markers here are compressed with zlib (stdlib): a marker is
opaque to clients and only read back by the cluster that made it, but markers are not
interchangeable with Garage's.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

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

#: zlib level: markers are small and made per request; speed matters more than ratio.
_ZLIB_LEVEL: Final = 6


class InvalidSeenMarker(BadRequestError):
    """Raised when a PollRange seen marker is not one this cluster made (not base64, not
    zlib, not the marker's msgpack shape, or too large)."""


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
        return base64.b64encode(zlib.compress(pack(wire), _ZLIB_LEVEL)).decode("ascii")

    @classmethod
    def decode(cls, token: str) -> RangeSeenMarker:
        """Parses a token made by :meth:`encode`.

        Raises:
            InvalidSeenMarker: the token is not a seen marker.
        """
        try:
            compressed = base64.b64decode(token.encode("ascii"), validate=True)
            inflater = zlib.decompressobj()
            raw = inflater.decompress(compressed, MAX_SEEN_MARKER_BYTES)
            if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
                raise InvalidSeenMarker("invalid seen marker: truncated or too large")
            wire = unpack(_Wire, raw)
        except (UnicodeEncodeError, binascii.Error, zlib.error, DecodeError):
            raise InvalidSeenMarker("invalid seen marker") from None
        return cls(wire.vector_clock, wire.items)
