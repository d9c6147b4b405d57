"""Causal contexts (vector clocks) and their text form, the causality token.

Garage: src/model/k2v/causality.rs (design §8.6, doc/drafts/k2v-spec.md).

A K2V item keeps its values in *dotted version vectors*: every value is tagged with the
node that wrote it and a time from that node's clock. The **causal context** of an item
is, per node, the highest time of that node the item has seen (``{node: time}``, a vector
clock). A client reads an item, gets its context as a **causality token**, and sends the
token back with its next write: the write then replaces exactly the values the client saw
(those with ``time <= context[node]``) and keeps any value written concurrently.

Node ids in vector clocks are 64-bit: the first 8 bytes (big-endian) of the node's 32-byte
id (:func:`make_node_id`), which keeps tokens short.

Token format (byte for byte Garage's, so tokens are portable between implementations)::

    u64 BE checksum ‖ (u64 BE node, u64 BE time) * n        urlsafe base64, no padding

with ``checksum`` the XOR of every node and time. A token of the wrong length, not base64,
with a wrong checksum or with nodes not in increasing order (every token is made from a
sorted clock) is refused with :class:`InvalidCausalityToken`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Self, final

from garage_model.helper import BadRequestError

if TYPE_CHECKING:
    from garage_util.data import Uuid

__all__ = [
    "U64_MAX",
    "CausalContext",
    "InvalidCausalityToken",
    "make_node_id",
    "vclock_gt",
    "vclock_max",
]

#: Times and node ids are unsigned 64-bit integers (Garage's ``u64``).
U64_MAX: Final = 2**64 - 1

#: The characters of urlsafe base64 (tokens carry no padding).
_URLSAFE_NO_PAD: Final = re.compile(r"[A-Za-z0-9_-]*")

#: Bytes of one u64 in a token, and of one (node, time) pair.
_U64: Final = 8
_PAIR: Final = 2 * _U64


class InvalidCausalityToken(BadRequestError):
    """Raised when a causality token is not one this format produces: not urlsafe base64,
    a length that is not 8 + 16·n bytes, nodes not in increasing order, or a checksum that
    does not match."""


def make_node_id(node_id: Uuid) -> int:
    """The 64-bit K2V node id of a node: the first 8 bytes of its id, big-endian."""
    return int.from_bytes(bytes(node_id)[:_U64], "big")


def vclock_gt(a: Mapping[int, int], b: Mapping[int, int]) -> bool:
    """True when ``a`` has some node with a time greater than in ``b`` (missing = 0)."""
    return any(t > b.get(n, 0) for n, t in a.items())


def vclock_max(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    """The node-wise maximum of two vector clocks."""
    out = dict(a)
    for n, t in b.items():
        out[n] = max(out.get(n, 0), t)
    return out


def _check_u64(what: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise ValueError(f"{what} must be an unsigned 64-bit integer, got {value!r}")
    return value


@final
@dataclass(frozen=True, slots=True)
class CausalContext:
    """A vector clock ``{k2v node id: time}``: what a reader of an item has seen.

    Build one from any mapping (it is copied, sorted by node); use :meth:`parse` for a
    token received from a client and :meth:`serialize` for the token to send.

    Attributes:
        vector_clock: per 64-bit node id, the highest time of that node seen.

    Raises:
        ValueError: a node id or time is not an unsigned 64-bit integer.
    """

    vector_clock: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clock = {
            _check_u64("a node id", n): _check_u64("a time", t)
            for n, t in sorted(self.vector_clock.items())
        }
        object.__setattr__(self, "vector_clock", clock)

    def __hash__(self) -> int:
        return hash(tuple(self.vector_clock.items()))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, int]]) -> Self:
        """A context from ``(node, time)`` pairs (a repeated node keeps its last time)."""
        return cls(dict(pairs))

    def serialize(self) -> str:
        """The causality token: the binary form above in urlsafe base64 without padding."""
        ints = list(itertools.chain.from_iterable(self.vector_clock.items()))
        checksum = 0
        for i in ints:
            checksum ^= i
        raw = b"".join(i.to_bytes(_U64, "big") for i in (checksum, *ints))
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Self:
        """Parses a causality token made by :meth:`serialize` (here or by Garage).

        Raises:
            InvalidCausalityToken: the token is malformed or its checksum is wrong.
        """
        if _URLSAFE_NO_PAD.fullmatch(token) is None or len(token) % 4 == 1:
            raise InvalidCausalityToken(
                "invalid causality token: not urlsafe base64 without padding"
            )
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error):
            raise InvalidCausalityToken("invalid causality token: not base64") from None
        if len(raw) < _U64 or (len(raw) - _U64) % _PAIR:
            raise InvalidCausalityToken(
                f"invalid causality token: {len(raw)} bytes is not 8 + 16 x n"
            )
        check = int.from_bytes(raw[:_U64], "big")
        clock: dict[int, int] = {}
        last = -1
        for off in range(_U64, len(raw), _PAIR):
            node = int.from_bytes(raw[off : off + _U64], "big")
            time = int.from_bytes(raw[off + _U64 : off + _PAIR], "big")
            # Tokens list nodes in increasing order (Garage's come from a BTreeMap). A
            # repeated node, which Garage would collapse, could hide a corruption from the
            # checksum, so it is refused.
            if node <= last:
                raise InvalidCausalityToken("invalid causality token: nodes out of order")
            last = node
            clock[node] = time
            check ^= node ^ time
        if check != 0:
            raise InvalidCausalityToken("invalid causality token: bad checksum")
        return cls(clock)

    def is_newer_than(self, other: CausalContext) -> bool:
        """True when this context has seen something ``other`` has not (some node's
        time is greater): the item changed since ``other`` was read."""
        return vclock_gt(self.vector_clock, other.vector_clock)

    def __to_wire__(self) -> object:
        return [[n, t] for n, t in self.vector_clock.items()]

    @classmethod
    def __from_wire__(cls, obj: object, type_args: tuple[object, ...]) -> Self:
        del type_args  # not generic
        if type(obj) is not list:
            raise ValueError("a causal context is an array of [node, time] pairs")
        pairs: list[tuple[int, int]] = []
        for pair in obj:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("a causal context is an array of [node, time] pairs")
            pairs.append((pair[0], pair[1]))
        return cls.from_pairs(pairs)
