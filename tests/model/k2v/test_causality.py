"""Causal contexts: the causality token format (Garage's, byte for byte) and its checks."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_model.helper import BadRequestError
from garage_model.k2v import (
    U64_MAX,
    CausalContext,
    InvalidCausalityToken,
    make_node_id,
    vclock_gt,
    vclock_max,
)
from garage_util.data import FixedBytes32
from garage_util.encode import pack, unpack

u64 = st.integers(0, U64_MAX)
clocks = st.dictionaries(u64 | st.integers(0, 4), u64 | st.integers(0, 4), max_size=6)


def raw_token(checksum: int, *ints: int) -> str:
    raw = b"".join(i.to_bytes(8, "big") for i in (checksum, *ints))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@given(clocks)
def test_token_round_trip(clock: dict[int, int]) -> None:
    cc = CausalContext(clock)
    token = cc.serialize()
    assert "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert CausalContext.parse(token) == cc
    assert dict(CausalContext.parse(token).vector_clock) == clock


def test_token_vector_of_garage() -> None:
    # Garage's own test vector (src/model/k2v/causality.rs): the same three pairs.
    cc = CausalContext({4: 42, 1928131023: 76, 0xEFC0C1C47F9DE433: 2})
    ints = [4, 42, 1928131023, 76, 0xEFC0C1C47F9DE433, 2]
    checksum = 0
    for i in ints:
        checksum ^= i
    assert cc.serialize() == raw_token(checksum, *ints)
    assert CausalContext.parse(cc.serialize()) == cc


def test_empty_context_is_a_valid_token() -> None:
    assert CausalContext().serialize() == raw_token(0)
    assert CausalContext.parse(raw_token(0)) == CausalContext()


@pytest.mark.parametrize(
    "token",
    [
        "",  # no checksum
        "AAAA",  # 3 bytes
        raw_token(0) + "AAAA",  # 8 + 3 bytes
        raw_token(1),  # checksum of nothing is 0
        raw_token(5 ^ 7 ^ 1, 5, 7),  # wrong checksum
        raw_token(5 ^ 7, 5, 7) + "=",  # padding
        raw_token(5 ^ 7, 5, 7).replace("A", "+"),  # standard, not urlsafe, alphabet
        raw_token(0, 1, 1, 0, 0),  # nodes out of order (checksum right)
        raw_token(0, 1, 5, 1, 5),  # a repeated node (checksum right)
        "not a token!",
        "tökén",
    ],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidCausalityToken):
        CausalContext.parse(token)


@given(clocks, st.integers(0, 63))
def test_any_flipped_bit_is_refused(clock: dict[int, int], bit: int) -> None:
    token = CausalContext(clock).serialize()
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    flipped = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidCausalityToken):
        CausalContext.parse(flipped)


def test_invalid_token_is_a_bad_request() -> None:
    assert issubclass(InvalidCausalityToken, BadRequestError)


def test_contexts_refuse_values_out_of_u64() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        CausalContext({-1: 3})
    with pytest.raises(ValueError, match="64-bit"):
        CausalContext({1: U64_MAX + 1})


def test_node_id_is_the_first_eight_bytes() -> None:
    node = FixedBytes32(bytes(range(32)))
    assert make_node_id(node) == 0x0001020304050607


@given(clocks, clocks)
def test_is_newer_than(a: dict[int, int], b: dict[int, int]) -> None:
    newer = CausalContext(a).is_newer_than(CausalContext(b))
    assert newer == any(t > b.get(n, 0) for n, t in a.items())
    merged = vclock_max(a, b)
    assert not vclock_gt(a, merged)
    assert not vclock_gt(b, merged)
    assert not CausalContext(merged).is_newer_than(CausalContext(merged))


@given(clocks)
def test_wire_round_trip(clock: dict[int, int]) -> None:
    cc = CausalContext(clock)
    assert unpack(CausalContext, pack(cc)) == cc
    assert unpack(CausalContext | None, pack(None)) is None
    assert hash(cc) == hash(CausalContext(dict(reversed(list(clock.items())))))
