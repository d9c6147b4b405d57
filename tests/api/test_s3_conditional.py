"""Preconditions in RFC 7232 §6 order, with real HTTP-dates; copy-source variants."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_api.s3 import Precondition, Preconditions, S3Error

ETAG = "9bb58f26192e4ba00f01e2e7b136bbd8"
OTHER = "0123456789abcdef0123456789abcdef"
# The object was last modified at 2025-01-01T12:00:00.750Z.
MODIFIED_MS = int(datetime(2025, 1, 1, 12, tzinfo=UTC).timestamp() * 1000) + 750
MODIFIED_S = MODIFIED_MS // 1000


def http_date(unix_s: int) -> str:
    return format_datetime(datetime.fromtimestamp(unix_s, UTC), usegmt=True)


LAST_MODIFIED = http_date(MODIFIED_S)  # what GetObject sent as Last-Modified
BEFORE = http_date(MODIFIED_S - 1)
AFTER = http_date(MODIFIED_S + 1)

P = Precondition


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({}, P.PROCEED),
        # If-Match (strong comparison)
        ({"If-Match": f'"{ETAG}"'}, P.PROCEED),
        ({"If-Match": ETAG}, P.PROCEED),  # unquoted, as some clients send it
        ({"If-Match": f'"{OTHER}"'}, P.FAILED),
        ({"If-Match": f'"{OTHER}", "{ETAG}"'}, P.PROCEED),
        ({"If-Match": "*"}, P.PROCEED),
        ({"If-Match": f'W/"{ETAG}"'}, P.FAILED),
        # If-None-Match (weak comparison)
        ({"If-None-Match": f'"{ETAG}"'}, P.NOT_MODIFIED),
        ({"If-None-Match": f'W/"{ETAG}"'}, P.NOT_MODIFIED),
        ({"If-None-Match": f'"{OTHER}"'}, P.PROCEED),
        ({"If-None-Match": f'"{OTHER}","{ETAG}"'}, P.NOT_MODIFIED),
        ({"If-None-Match": "*"}, P.NOT_MODIFIED),
        # If-Modified-Since, at second resolution
        ({"If-Modified-Since": LAST_MODIFIED}, P.NOT_MODIFIED),
        ({"If-Modified-Since": AFTER}, P.NOT_MODIFIED),
        ({"If-Modified-Since": BEFORE}, P.PROCEED),
        ({"If-Modified-Since": "not a date"}, P.PROCEED),  # ignored
        # If-Unmodified-Since
        ({"If-Unmodified-Since": LAST_MODIFIED}, P.PROCEED),
        ({"If-Unmodified-Since": AFTER}, P.PROCEED),
        ({"If-Unmodified-Since": BEFORE}, P.FAILED),
        ({"If-Unmodified-Since": "yesterday"}, P.PROCEED),  # ignored
        # Step 1 beats step 2: If-Match holds, so If-Unmodified-Since is not evaluated.
        ({"If-Match": f'"{ETAG}"', "If-Unmodified-Since": BEFORE}, P.PROCEED),
        ({"If-Match": f'"{OTHER}"', "If-Unmodified-Since": AFTER}, P.FAILED),
        # Step 3 beats step 4: If-None-Match present, If-Modified-Since ignored.
        ({"If-None-Match": f'"{OTHER}"', "If-Modified-Since": AFTER}, P.PROCEED),
        ({"If-None-Match": f'"{ETAG}"', "If-Modified-Since": BEFORE}, P.NOT_MODIFIED),
        # 412 conditions are checked before 304 ones.
        ({"If-Match": f'"{OTHER}"', "If-None-Match": f'"{ETAG}"'}, P.FAILED),
        ({"If-Unmodified-Since": BEFORE, "If-Modified-Since": AFTER}, P.FAILED),
        ({"If-Match": f'"{ETAG}"', "If-None-Match": f'"{ETAG}"'}, P.NOT_MODIFIED),
    ],
)
def test_get_head_preconditions(headers: dict[str, str], outcome: Precondition) -> None:
    pre = Preconditions.from_headers(headers)
    assert pre.evaluate(ETAG, MODIFIED_MS) is outcome


def test_is_empty_when_no_usable_condition() -> None:
    assert Preconditions.from_headers({}).is_empty
    assert Preconditions.from_headers({"If-Modified-Since": "garbage"}).is_empty
    assert not Preconditions.from_headers({"If-None-Match": "*"}).is_empty


@pytest.mark.parametrize(
    "date",
    [
        "Wed, 01 Jan 2025 12:00:00 GMT",  # IMF-fixdate
        "Wednesday, 01-Jan-25 12:00:00 GMT",  # RFC 850
        "Wed Jan  1 12:00:00 2025",  # asctime, no zone: GMT
    ],
)
def test_the_three_http_date_formats(date: str) -> None:
    pre = Preconditions.from_headers([("if-modified-since", date)])
    assert pre.if_modified_since_s == MODIFIED_S
    assert pre.evaluate(ETAG, MODIFIED_MS) is P.NOT_MODIFIED


def test_repeated_headers_combine() -> None:
    pre = Preconditions.from_headers([("If-Match", f'"{OTHER}"'), ("if-match", f'"{ETAG}"')])
    assert pre.if_match == (f'"{OTHER}"', f'"{ETAG}"')
    assert pre.evaluate(ETAG, MODIFIED_MS) is P.PROCEED


def test_check_raises_the_matching_errors() -> None:
    Preconditions.from_headers({}).check(ETAG, MODIFIED_MS)
    with pytest.raises(S3Error) as e:
        Preconditions.from_headers({"If-None-Match": "*"}).check(ETAG, MODIFIED_MS)
    assert (e.value.status, e.value.code, e.value.has_body) == (304, "NotModified", False)
    assert e.value.to_xml() == b""
    with pytest.raises(S3Error) as e:
        Preconditions.from_headers({"If-Match": f'"{OTHER}"'}).check(ETAG, MODIFIED_MS)
    assert (e.value.status, e.value.code) == (412, "PreconditionFailed")


def test_writes_get_412_instead_of_304_and_ignore_if_modified_since() -> None:
    # Conditional PutObject: If-None-Match: * refuses to overwrite an existing object...
    put = Preconditions.from_headers({"If-None-Match": "*"})
    assert put.evaluate(ETAG, MODIFIED_MS, read=False) is P.FAILED
    # ...and lets a new one be created.
    assert put.evaluate(None, None, read=False) is P.PROCEED
    # If-Match needs an object to match.
    assert Preconditions.from_headers({"If-Match": "*"}).evaluate(None, None) is P.FAILED
    ims = Preconditions.from_headers({"If-Modified-Since": AFTER})
    assert ims.evaluate(ETAG, MODIFIED_MS, read=False) is P.PROCEED


def test_copy_source_conditions_use_their_own_headers_and_only_fail_with_412() -> None:
    headers = {
        "If-Match": f'"{OTHER}"',  # the destination's headers are not the source's
        "x-amz-copy-source-if-none-match": f'"{ETAG}"',
    }
    assert Preconditions.from_headers(headers).evaluate(ETAG, MODIFIED_MS) is P.FAILED
    source = Preconditions.from_copy_source_headers(headers)
    assert source.if_match is None
    assert source.evaluate(ETAG, MODIFIED_MS) is P.NOT_MODIFIED
    with pytest.raises(S3Error) as e:
        source.check_copy_source(ETAG, MODIFIED_MS)
    assert (e.value.status, e.value.code) == (412, "PreconditionFailed")
    unmodified = Preconditions.from_copy_source_headers(
        {"x-amz-copy-source-if-modified-since": BEFORE, "x-amz-copy-source-if-match": ETAG}
    )
    unmodified.check_copy_source(ETAG, MODIFIED_MS)
    with pytest.raises(S3Error):
        Preconditions.from_copy_source_headers(
            {"x-amz-copy-source-if-modified-since": AFTER}
        ).check_copy_source(ETAG, MODIFIED_MS)


tags = st.sampled_from([ETAG, OTHER, "*"]).map(lambda t: t if t == "*" else f'"{t}"')
tag_lists = st.lists(tags, min_size=1, max_size=3).map(", ".join)
dates_s = st.integers(min_value=MODIFIED_S - 2, max_value=MODIFIED_S + 2)


@given(
    if_match=tag_lists | st.none(),
    if_none_match=tag_lists | st.none(),
    ims=dates_s | st.none(),
    ius=dates_s | st.none(),
)
def test_evaluation_matches_the_rfc_7232_algorithm(
    if_match: str | None, if_none_match: str | None, ims: int | None, ius: int | None
) -> None:
    headers = {}
    if if_match is not None:
        headers["If-Match"] = if_match
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    if ims is not None:
        headers["If-Modified-Since"] = http_date(ims)
    if ius is not None:
        headers["If-Unmodified-Since"] = http_date(ius)

    def listed(value: str) -> bool:
        return "*" in value or ETAG in value

    # RFC 7232 §6, written independently of the implementation.
    if (if_match is not None and not listed(if_match)) or (
        if_match is None and ius is not None and ius < MODIFIED_S
    ):
        expected = P.FAILED
    elif (if_none_match is not None and listed(if_none_match)) or (
        if_none_match is None and ims is not None and ims >= MODIFIED_S
    ):
        expected = P.NOT_MODIFIED
    else:
        expected = P.PROCEED
    assert Preconditions.from_headers(headers).evaluate(ETAG, MODIFIED_MS) is expected
