"""The listing core against a brute-force model: every page, every way of paging.

The model lists all keys at once: keys under the prefix, rolled up into common prefixes,
sorted, then cut into pages of ``max_keys``. Paging through the core, whether with V2
continuation tokens, V1 markers or upload markers, and whatever the size of the table reads
the driver makes, must give exactly those pages: no entry twice, none missing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_api.s3 import (
    MAX_LIST_KEYS,
    UPLOAD_ID_INCLUDE,
    ListEntry,
    Lister,
    ListingPage,
    ListStart,
    S3Error,
    clamp_max_keys,
    common_prefix,
    decode_continuation_token,
    decode_upload_id,
    encode_continuation_token,
    key_after_prefix,
    list_objects_start,
    list_uploads_start,
    paginate,
    paginate_parts,
)

MAX_CHAR = "\U0010ffff"

# ---------------------------------------------------------------------- helpers


def test_key_after_prefix_examples() -> None:
    assert key_after_prefix("a/b/") == "a/b0"
    assert key_after_prefix("€") == "₭"
    assert key_after_prefix("\U0010fffd") == "\U0010fffe"
    assert key_after_prefix("\U0010fffe") == MAX_CHAR
    assert key_after_prefix("a" + MAX_CHAR) == "b"
    assert key_after_prefix(MAX_CHAR * 3) is None
    assert key_after_prefix("") is None
    assert key_after_prefix("\ud7ff") == "\ue000"  # no surrogate is a valid key


key_chars = st.characters(codec="utf-8")  # no surrogates: keys are UTF-8


@given(st.text(key_chars, max_size=4), st.text(key_chars, max_size=6))
def test_key_after_prefix_bounds_exactly_the_keys_with_the_prefix(prefix: str, key: str) -> None:
    after = key_after_prefix(prefix)
    if after is None:
        assert prefix.strip(MAX_CHAR) == ""
        assert key.startswith(prefix) == (key >= prefix)
    else:
        assert key.startswith(prefix) == (prefix <= key < after)


@given(st.text(key_chars, max_size=4), st.text(key_chars, max_size=6))
def test_key_after_prefix_bounds_longer_keys_too(prefix: str, rest: str) -> None:
    after = key_after_prefix(prefix)
    assert after is None or prefix + rest < after


@pytest.mark.parametrize(
    ("key", "prefix", "delimiter", "expected"),
    [
        ("a/b/c", "a/", "/", "a/b/"),
        ("a/b/c", "a/b/", "/", None),
        ("a/b/c", "", "/", "a/"),
        ("a/", "", "/", "a/"),
        ("a/b/c", "", None, None),
        ("a/b/c", "", "", None),
        ("photos/2006/feb/x", "photos/", "/2006/", None),
        ("photos/2006/feb/x", "photos", "/2006/", "photos/2006/"),
        ("aXXbXXc", "", "XX", "aXX"),
    ],
)
def test_common_prefix(key: str, prefix: str, delimiter: str | None, expected: str | None) -> None:
    assert common_prefix(key, prefix, delimiter) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 1000), (0, 1), (1, 1), (999, 999), (1000, 1000), (1001, 1000), (10**9, 1000)],
)
def test_clamp_max_keys(value: int | None, expected: int) -> None:
    assert clamp_max_keys(value) == expected
    assert MAX_LIST_KEYS == 1000


@given(st.text(key_chars, max_size=20), st.booleans())
def test_continuation_tokens_round_trip(key: str, inclusive: bool) -> None:
    start = ListStart(key, inclusive=inclusive)
    token = encode_continuation_token(start)
    assert token[0] == ("[" if inclusive else "]")
    assert decode_continuation_token(token) == start


@pytest.mark.parametrize("token", ["", "x", "YQ==", "[not base64!", "]////", "[" + "gA=="])
def test_foreign_continuation_tokens_are_refused(token: str) -> None:
    with pytest.raises(S3Error) as e:
        decode_continuation_token(token)
    assert (e.value.status, e.value.code) == (400, "InvalidArgument")


def test_upload_ids() -> None:
    assert decode_upload_id("ab" * 32) == bytes([0xAB]) * 32
    for bad in ["", "ab", "zz" * 32, "ab" * 33, "include"]:
        with pytest.raises(S3Error) as e:
            decode_upload_id(bad)
        assert (e.value.status, e.value.code) == (404, "NoSuchUpload")


# ---------------------------------------------------------------------- starts


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"v2": True}, ListStart("p/")),
        ({"v2": True, "start_after": "p/k"}, ListStart("p/k", inclusive=False)),
        ({"v2": True, "start_after": "a"}, ListStart("p/")),  # before the prefix
        # start-after inside a common prefix is plain: keys after it
        ({"v2": True, "start_after": "p/d/x"}, ListStart("p/d/x", inclusive=False)),
        ({"v2": True, "continuation_token": "]cC9r"}, ListStart("p/k", inclusive=False)),
        ({"v2": True, "continuation_token": "[YQ=="}, ListStart("p/")),  # "a" < prefix
        ({"v2": False}, ListStart("p/")),
        ({"v2": False, "marker": "p/k"}, ListStart("p/k", inclusive=False)),
        ({"v2": False, "marker": "a"}, ListStart("p/")),
        ({"v2": False, "marker": "q"}, ListStart("q", inclusive=False)),  # past the prefix
        # a V1 marker inside a common prefix stands for the whole prefix
        ({"v2": False, "marker": "p/d/"}, ListStart("p/d0")),
        ({"v2": False, "marker": "p/d/x"}, ListStart("p/d0")),
    ],
)
def test_list_objects_start(kwargs: dict[str, object], expected: ListStart) -> None:
    assert list_objects_start(prefix="p/", delimiter="/", **kwargs) == expected  # type: ignore[arg-type]


def test_nothing_follows_a_marker_in_the_last_possible_prefix() -> None:
    assert list_objects_start(prefix="", delimiter="/", v2=False, marker=MAX_CHAR + "/") is not None
    assert list_objects_start(prefix="", delimiter=MAX_CHAR, v2=False, marker=MAX_CHAR) is None


def test_list_uploads_start() -> None:
    up = "0f" * 32
    assert list_uploads_start(prefix="", delimiter=None) == ListStart("")
    assert list_uploads_start(prefix="", delimiter=None, upload_id_marker=up) == ListStart("")
    assert list_uploads_start(prefix="", delimiter=None, key_marker="k") == ListStart(
        "k", inclusive=False
    )
    assert list_uploads_start(
        prefix="", delimiter=None, key_marker="k", upload_id_marker=up.upper()
    ) == ListStart("k", after_sub=up)
    assert list_uploads_start(
        prefix="", delimiter=None, key_marker="k", upload_id_marker=UPLOAD_ID_INCLUDE
    ) == ListStart("k")
    with pytest.raises(S3Error):
        list_uploads_start(prefix="", delimiter=None, key_marker="k", upload_id_marker="nope")


# ---------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Item:
    """One line of a listing, as the model and the pages both see it."""

    text: str  # the key or the common prefix
    sub: str = ""
    is_prefix: bool = False


def model(keys: dict[str, list[str]], prefix: str, delimiter: str | None) -> list[Item]:
    """Every entry of the listing, brute force: roll up, dedupe, sort."""
    items: set[Item] = set()
    for key, subs in keys.items():
        if not key.startswith(prefix):
            continue
        cp = None
        if delimiter:
            i = key.find(delimiter, len(prefix))
            if i >= 0:
                cp = key[: i + len(delimiter)]
        if cp is not None:
            if subs:
                items.add(Item(cp, is_prefix=True))
        else:
            items.update(Item(key, sub) for sub in subs)
    return sorted(items, key=lambda it: (it.text, it.sub))


def page_items(page: ListingPage[int]) -> list[Item]:
    items = [Item(e.key, e.sub) for e in page.entries]
    items += [Item(p, is_prefix=True) for p in page.common_prefixes]
    return sorted(items, key=lambda it: (it.text, it.sub))


def entries_of(keys: dict[str, list[str]]) -> list[ListEntry[int]]:
    return [ListEntry(key, len(key), sub) for key in sorted(keys) for sub in sorted(keys[key])]


def run_lister(
    keys: dict[str, list[str]],
    *,
    prefix: str,
    delimiter: str | None,
    max_entries: int,
    start: ListStart | None,
    read_size: int,
) -> ListingPage[int]:
    """A driver over an in-memory table that returns ``read_size`` keys per read."""
    lister: Lister[int] = Lister(
        prefix=prefix, delimiter=delimiter, max_entries=max_entries, start=start
    )
    sorted_keys = sorted(keys)
    previous: str | None = None
    for _ in range(10_000):
        begin = lister.next_fetch()
        if begin is None:
            return lister.result()
        assert previous is None or begin > previous, "reads must move forward"
        previous = begin
        batch = [k for k in sorted_keys if k >= begin][:read_size]
        lister.feed(
            [ListEntry(k, len(k), s) for k in batch for s in sorted(keys[k])],
            more=len(batch) >= read_size,
            last_key=batch[-1] if batch else None,
        )
    raise AssertionError("the listing did not end")


def check_pages(pages: list[ListingPage[int]], expected: list[Item], max_entries: int) -> None:
    got = [item for page in pages for item in page_items(page)]
    assert got == expected, "pages must list every entry exactly once, in order"
    for page in pages[:-1]:
        assert page.is_truncated
        assert page.key_count == max_entries
    assert not pages[-1].is_truncated
    assert pages[-1].key_count <= max_entries
    assert len(pages) == max(1, -(-len(expected) // max_entries))


# Small alphabets make collisions with the delimiter and the prefix likely; the max char
# and U+D7FF exercise key_after_prefix's edge cases.
alphabet = st.sampled_from(["a", "b", "/", "-", MAX_CHAR, "\ud7ff", "é"])
keys_st = st.lists(st.text(alphabet, min_size=1, max_size=5), max_size=30, unique=True)
prefixes = st.sampled_from(["", "a", "a/", "b", "/", MAX_CHAR])
delimiters = st.sampled_from([None, "/", "a/", "-", MAX_CHAR])
page_sizes = st.integers(min_value=1, max_value=6)
read_sizes = st.integers(min_value=1, max_value=8)


@given(keys_st, prefixes, delimiters, page_sizes, read_sizes)
def test_v2_token_paging_matches_the_model(
    key_list: list[str], prefix: str, delimiter: str | None, max_keys: int, read_size: int
) -> None:
    keys = {k: [""] for k in key_list}
    pages = []
    start = list_objects_start(prefix=prefix, delimiter=delimiter, v2=True)
    while True:
        page = run_lister(
            keys,
            prefix=prefix,
            delimiter=delimiter,
            max_entries=max_keys,
            start=start,
            read_size=read_size,
        )
        pages.append(page)
        if not page.is_truncated:
            break
        assert page.next_start is not None
        token = encode_continuation_token(page.next_start)
        start = list_objects_start(
            prefix=prefix, delimiter=delimiter, v2=True, continuation_token=token
        )
    check_pages(pages, model(keys, prefix, delimiter), max_keys)


@given(keys_st, prefixes, delimiters, page_sizes)
def test_v1_marker_paging_matches_the_model(
    key_list: list[str], prefix: str, delimiter: str | None, max_keys: int
) -> None:
    keys = {k: [""] for k in key_list}
    pages = []
    marker = None
    while True:
        start = list_objects_start(prefix=prefix, delimiter=delimiter, v2=False, marker=marker)
        page = paginate(
            entries_of(keys), prefix=prefix, delimiter=delimiter, max_entries=max_keys, start=start
        )
        pages.append(page)
        if not page.is_truncated:
            break
        # NextMarker is the last entry of the page, key or common prefix (as S3 sends it).
        last = page_items(page)[-1]
        assert page.next_marker == last.text
        marker = page.next_marker
    check_pages(pages, model(keys, prefix, delimiter), max_keys)


upload_ids = st.sampled_from(["00" * 32, "7f" * 32, "80" * 32, "ff" * 32])


@given(
    st.dictionaries(
        st.text(alphabet, min_size=1, max_size=4),
        st.lists(upload_ids, max_size=3, unique=True),
        max_size=15,
    ),
    prefixes,
    delimiters,
    page_sizes,
    read_sizes,
)
def test_upload_paging_with_key_and_upload_id_markers_matches_the_model(
    keys: dict[str, list[str]],
    prefix: str,
    delimiter: str | None,
    max_uploads: int,
    read_size: int,
) -> None:
    pages = []
    key_marker = upload_marker = None
    while True:
        start = list_uploads_start(
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            upload_id_marker=upload_marker,
        )
        page = run_lister(
            keys,
            prefix=prefix,
            delimiter=delimiter,
            max_entries=max_uploads,
            start=start,
            read_size=read_size,
        )
        pages.append(page)
        if not page.is_truncated:
            break
        key_marker, upload_marker = page.next_marker, page.next_sub_marker
        last = page_items(page)[-1]
        assert (key_marker, upload_marker) == (last.text, last.sub or None)
    check_pages(pages, model(keys, prefix, delimiter), max_uploads)


@given(keys_st, prefixes, delimiters, page_sizes, read_sizes)
def test_the_driver_read_size_does_not_change_the_page(
    key_list: list[str], prefix: str, delimiter: str | None, max_keys: int, read_size: int
) -> None:
    keys = {k: [""] for k in key_list}
    start = list_objects_start(prefix=prefix, delimiter=delimiter, v2=True)
    by_reads = run_lister(
        keys,
        prefix=prefix,
        delimiter=delimiter,
        max_entries=max_keys,
        start=start,
        read_size=read_size,
    )
    at_once = paginate(
        entries_of(keys), prefix=prefix, delimiter=delimiter, max_entries=max_keys, start=start
    )
    assert by_reads == at_once


def test_a_common_prefix_is_skipped_in_one_read() -> None:
    keys = [f"dir/{i:04}" for i in range(1000)] + ["file", "zzz/1"]
    reads: list[str] = []
    lister: Lister[None] = Lister(prefix="", delimiter="/", max_entries=2, start=ListStart(""))
    while (begin := lister.next_fetch()) is not None:
        reads.append(begin)
        batch = [k for k in keys if k >= begin][: lister.page_size]
        lister.feed([ListEntry(k, None) for k in batch], more=len(batch) >= lister.page_size)
    page = lister.result()
    assert reads == ["", "dir0"]  # jumped past dir/ after the first read
    assert page.common_prefixes == ("dir/",)
    assert [e.key for e in page.entries] == ["file"]
    assert page.is_truncated
    assert page.next_marker == "file"
    assert page.next_start == ListStart("file", inclusive=False)


def test_listing_stops_at_the_end_of_the_prefix() -> None:
    entries = [ListEntry(k, 0) for k in ["a", "b/1", "b/2", "c"]]
    page = paginate(entries, prefix="b/", delimiter=None, max_entries=10, start=ListStart("b/"))
    assert [e.key for e in page.entries] == ["b/1", "b/2"]
    assert not page.is_truncated


def test_a_page_that_ends_exactly_is_not_truncated() -> None:
    entries = [ListEntry(k, 0) for k in ["a", "b"]]
    page = paginate(entries, prefix="", delimiter=None, max_entries=2, start=ListStart(""))
    assert (page.key_count, page.is_truncated, page.next_start) == (2, False, None)


def test_lister_misuse() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        Lister(prefix="", delimiter=None, max_entries=0, start=None)
    lister: Lister[int] = Lister(prefix="", delimiter=None, max_entries=1, start=ListStart(""))
    with pytest.raises(RuntimeError):
        lister.result()
    lister.feed([], more=False)
    with pytest.raises(RuntimeError):
        lister.feed([], more=False)
    assert lister.result() == ListingPage()
    assert paginate([ListEntry("a", 1)], prefix="", delimiter=None, max_entries=1, start=None) == (
        ListingPage()
    )


# ---------------------------------------------------------------------- ListParts


@given(
    st.lists(st.integers(min_value=1, max_value=40), unique=True, max_size=25).map(sorted),
    st.integers(min_value=1, max_value=6),
)
def test_part_paging_matches_the_model(numbers: list[int], max_parts: int) -> None:
    parts = [(n, f"etag{n}") for n in numbers]
    seen: list[tuple[int, str]] = []
    marker = None
    for _ in itertools.count():
        page, marker = paginate_parts(parts, part_number_marker=marker, max_parts=max_parts)
        assert len(page) <= max_parts
        seen += page
        if marker is None:
            break
        assert len(page) == max_parts
        assert marker == page[-1][0]
    assert seen == parts


@pytest.mark.parametrize("token", ["[é", "]\u00ff\u00fe", "[ä==", "x", ""])
def test_malformed_continuation_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(S3Error) as exc:
        decode_continuation_token(token)
    assert exc.value.code == "InvalidArgument"
    assert exc.value.status == 400
