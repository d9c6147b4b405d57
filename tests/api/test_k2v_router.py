"""The K2V router (garage_api.k2v.parse_request): endpoints, parameters, refusals.

Pure: method, raw path and raw query in, an Endpoint or a K2VError out. The property tests
check that what the client encodes (garage_api.signature.uri_encode, as K2VClient does)
is what the router decodes, for any text keys.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_api.k2v import (
    DEFAULT_POLL_TIMEOUT_S,
    MAX_POLL_TIMEOUT_S,
    K2VError,
    K2VOperation,
    clamp_poll_timeout,
    parse_request,
)
from garage_api.s3 import Authorization
from garage_api.signature import uri_encode

# Text that UTF-8 can encode (no lone surrogates), as keys are.
_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)


@pytest.mark.parametrize(
    ("method", "path", "query", "operation", "pk", "sk"),
    [
        ("GET", "/b/pk", "sort_key=sk", K2VOperation.READ_ITEM, "pk", "sk"),
        ("GET", "/b/pk", "sort_key=sk&causality_token=ct", K2VOperation.POLL_ITEM, "pk", "sk"),
        ("PUT", "/b/pk", "sort_key=sk", K2VOperation.INSERT_ITEM, "pk", "sk"),
        ("DELETE", "/b/pk", "sort_key=sk", K2VOperation.DELETE_ITEM, "pk", "sk"),
        ("GET", "/b", "", K2VOperation.READ_INDEX, None, None),
        ("GET", "/b/", "prefix=a&limit=3", K2VOperation.READ_INDEX, None, None),
        ("POST", "/b", "", K2VOperation.INSERT_BATCH, None, None),
        ("POST", "/b", "delete", K2VOperation.DELETE_BATCH, None, None),
        ("POST", "/b", "search", K2VOperation.READ_BATCH, None, None),
        ("POST", "/b", "search=", K2VOperation.READ_BATCH, None, None),
        ("SEARCH", "/b", "", K2VOperation.READ_BATCH, None, None),
        ("POST", "/b/pk", "poll_range", K2VOperation.POLL_RANGE, "pk", None),
        ("SEARCH", "/b/pk", "poll_range", K2VOperation.POLL_RANGE, "pk", None),
        ("OPTIONS", "/b/pk", "", K2VOperation.OPTIONS, None, None),
        # Leading slashes of the partition key are trimmed (Garage's router does too).
        ("GET", "/b//pk", "sort_key=sk", K2VOperation.READ_ITEM, "pk", "sk"),
        # Percent-decoding of the path; form-decoding of the query ("+" is a space).
        ("GET", "/b/a%2Fb%20c", "sort_key=x+y%2B", K2VOperation.READ_ITEM, "a/b c", "x y+"),
        # Unknown parameters (presigned URLs' X-Amz-*) are ignored.
        ("PUT", "/b/pk", "sort_key=s&X-Amz-Date=1&x-id=Put", K2VOperation.INSERT_ITEM, "pk", "s"),
    ],
)
def test_routes(
    method: str,
    path: str,
    query: str,
    operation: K2VOperation,
    pk: str | None,
    sk: str | None,
) -> None:
    ep = parse_request(method, path, query)
    assert ep.operation is operation
    assert ep.bucket == "b"
    assert ep.partition_key == pk
    assert ep.sort_key == sk
    assert ep.name == operation.value


def test_read_index_and_poll_parameters() -> None:
    ep = parse_request("GET", "/b", "prefix=p&start=ps&end=pz&limit=10&reverse=true")
    assert (ep.prefix, ep.start, ep.end, ep.limit, ep.reverse) == ("p", "ps", "pz", 10, True)
    ep = parse_request("GET", "/b/k", "sort_key=s&causality_token=abc&timeout=7")
    assert (ep.causality_token, ep.timeout_s) == ("abc", 7)
    # Empty values count as absent, as in Garage.
    ep = parse_request("GET", "/b", "prefix=&limit=")
    assert ep.prefix is None
    assert ep.limit is None


@pytest.mark.parametrize(
    ("operation", "needed"),
    [
        (K2VOperation.READ_ITEM, Authorization.READ),
        (K2VOperation.POLL_ITEM, Authorization.READ),
        (K2VOperation.READ_INDEX, Authorization.READ),
        (K2VOperation.READ_BATCH, Authorization.READ),
        (K2VOperation.INSERT_ITEM, Authorization.WRITE),
        (K2VOperation.DELETE_ITEM, Authorization.WRITE),
        (K2VOperation.INSERT_BATCH, Authorization.WRITE),
        (K2VOperation.DELETE_BATCH, Authorization.WRITE),
        (K2VOperation.POLL_RANGE, Authorization.READ),  # Garage asks write: it only reads
    ],
)
def test_permissions(operation: K2VOperation, needed: Authorization) -> None:
    shapes = {
        K2VOperation.READ_ITEM: ("GET", "/b/k", "sort_key=s"),
        K2VOperation.POLL_ITEM: ("GET", "/b/k", "sort_key=s&causality_token=t"),
        K2VOperation.READ_INDEX: ("GET", "/b", ""),
        K2VOperation.READ_BATCH: ("SEARCH", "/b", ""),
        K2VOperation.INSERT_ITEM: ("PUT", "/b/k", "sort_key=s"),
        K2VOperation.DELETE_ITEM: ("DELETE", "/b/k", "sort_key=s"),
        K2VOperation.INSERT_BATCH: ("POST", "/b", ""),
        K2VOperation.DELETE_BATCH: ("POST", "/b", "delete"),
        K2VOperation.POLL_RANGE: ("POST", "/b/k", "poll_range"),
    }
    ep = parse_request(*shapes[operation])
    assert ep.operation is operation
    assert ep.authorization is needed


@pytest.mark.parametrize(
    ("method", "path", "query", "code", "status"),
    [
        ("GET", "/", "", "InvalidRequest", 400),  # no bucket
        ("GET", "/b/k", "", "InvalidRequest", 400),  # no sort_key
        ("PUT", "/b/k", "sort_key=", "InvalidRequest", 400),  # empty = absent
        ("PUT", "/b", "", "InvalidRequest", 400),  # InsertItem needs a partition key
        ("DELETE", "/b", "", "InvalidRequest", 400),
        ("GET", "/b/k", "sort_key=s&search", "InvalidRequest", 400),  # keyword on GET
        ("POST", "/b", "search&delete", "InvalidRequest", 400),  # two keywords
        ("POST", "/b/k", "", "InvalidRequest", 400),  # POST item without poll_range
        ("POST", "/b", "poll_range", "InvalidRequest", 400),  # PollRange needs a pk
        ("GET", "/b/k", "sort_key=a&sort_key=b", "InvalidRequest", 400),  # repeated
        ("GET", "/b", "limit=-1", "InvalidRequest", 400),
        ("GET", "/b", "limit=1e3", "InvalidRequest", 400),
        ("GET", "/b", "limit=99999999999999999999999", "InvalidRequest", 400),  # > u64
        ("GET", "/b", "reverse=yes", "InvalidRequest", 400),
        ("GET", "/b/k", "sort_key=s&causality_token=t&timeout=x", "InvalidRequest", 400),
        ("GET", "/b/%FF", "sort_key=s", "InvalidUtf8String", 400),
        ("GET", "/b/k", "sort_key=%C3", "InvalidUtf8String", 400),
        ("HEAD", "/b/k", "sort_key=s", "NotImplemented", 501),
        ("PATCH", "/b/k", "sort_key=s", "NotImplemented", 501),
    ],
)
def test_refusals(method: str, path: str, query: str, code: str, status: int) -> None:
    with pytest.raises(K2VError) as info:
        parse_request(method, path, query)
    assert (info.value.code, info.value.status) == (code, status)
    assert info.value.message


@given(bucket=st.from_regex(r"[a-z0-9][a-z0-9.-]{2,20}", fullmatch=True), pk=_text, sk=_text)
def test_client_encoding_round_trips(bucket: str, pk: str, sk: str) -> None:
    """Whatever text keys the client encodes, the router decodes the same keys."""
    path = f"/{uri_encode(bucket)}/{uri_encode(pk)}"
    ep = parse_request("PUT", path, f"sort_key={uri_encode(sk)}")
    assert (ep.operation, ep.bucket, ep.partition_key, ep.sort_key) == (
        K2VOperation.INSERT_ITEM,
        bucket,
        pk,
        sk,
    )


@given(st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1)))
def test_poll_timeout_is_clamped(timeout: int | None) -> None:
    clamped = clamp_poll_timeout(timeout)
    assert 1 <= clamped <= MAX_POLL_TIMEOUT_S
    if timeout is None:
        assert clamped == DEFAULT_POLL_TIMEOUT_S
    elif 1 <= timeout <= MAX_POLL_TIMEOUT_S:
        assert clamped == timeout
