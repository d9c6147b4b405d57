"""Listing pagination: where a listing starts, what one page holds, where the next starts.

Garage: src/api/s3/list.rs and ``key_after_prefix`` in src/api/common/helpers.rs (design
§10.8). Pure: the async driver that reads the object table feeds pages to a
:class:`Lister` and asks it where to read next; :func:`paginate` runs the same core over
an in-memory iterator.

The listing model
-----------------
A listing with ``prefix`` and ``delimiter`` is the sorted sequence of **entries** of the
keys that start with ``prefix``: a key whose rest (after the prefix) contains the delimiter
is rolled up into the **common prefix** ending at the first delimiter; every other key is
itself an entry. Because all the keys starting with a given common prefix are contiguous in
sorted order, and come after the prefix string itself, the entries sorted by their string
(key or common prefix) are in the order of the keys. ``max-keys`` bounds the number of
entries of a page, keys and common prefixes together (as S3 counts them).

A ListMultipartUploads entry is an *upload*: a key has zero or more, sorted by upload id
(the "sub" of an entry); common prefixes roll up keys as for objects.

Where pages start (:class:`ListStart`)
--------------------------------------
A page starts right after the last entry of the previous one:

- after a key ``k`` → ``ListStart(k, inclusive=False)``, V2 token ``"]" + base64(k)``;
- after an upload ``u`` of key ``k`` → ``ListStart(k, after_sub=u)``: the rest of ``k``;
- after a common prefix ``p`` → every key under ``p`` is done, so the next page starts at
  :func:`key_after_prefix` of ``p`` inclusive, V2 token ``"[" + base64(...)``. This is the
  "jump past a common prefix" that keeps the table read from walking through a big
  directory one page at a time.

V1 markers (``marker``, ``key-marker``) are exclusive and S3 sends back the last entry, key
or common prefix, as ``NextMarker``. So a marker that falls inside a common prefix (of the
request's delimiter) stands for that whole prefix: the next page starts after it. That is
what makes ``NextMarker = "photos/"`` page correctly, with no duplicate common prefix.
V2's ``start-after`` is the plain "keys after this one" of the S3 documentation.

The driver loop (sans-I/O)
--------------------------
::

    lister = Lister(prefix=p, delimiter=d, max_entries=clamp_max_keys(n), start=start)
    while (key := lister.next_fetch()) is not None:
        objects = await table.get_range(bucket, start=key, limit=lister.page_size)
        lister.feed(entries_of(objects), more=len(objects) >= lister.page_size)
    page = lister.result()

``next_fetch`` returns the first key the next read must include. It only moves forward:
once a table page has been fed, no later fetch starts at or before its last key, so the
loop always ends, whatever the page size.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar, final

from ._errors import S3Error

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "MAX_LIST_KEYS",
    "MAX_PART_NUMBER_MARKER",
    "UPLOAD_ID_INCLUDE",
    "ListEntry",
    "ListStart",
    "Lister",
    "ListingPage",
    "clamp_max_keys",
    "common_prefix",
    "decode_continuation_token",
    "decode_upload_id",
    "encode_continuation_token",
    "key_after_prefix",
    "list_objects_start",
    "list_uploads_start",
    "paginate",
    "paginate_parts",
]

T = TypeVar("T")
P = TypeVar("P")

# S3's page size bounds for every listing (max-keys, max-uploads, max-parts): at most 1000
# entries per page (AWS: ListObjectsV2 "MaxKeys"; design §10.8 clamps to 1..1000).
MAX_LIST_KEYS: Final = 1000

# ListParts' part-number-marker cannot exceed the largest part number (design §10.8).
MAX_PART_NUMBER_MARKER: Final = 10_000

# Garage's extension of upload-id-marker: start *at* key-marker, including all its uploads
# (Garage: list.rs, ListMultipartUploadsQuery::begin).
UPLOAD_ID_INCLUDE: Final = "include"

# Upload ids are the hex of a 32-byte uuid (design §10.6).
_UPLOAD_ID_BYTES: Final = 32

# The largest code point; no key can sort after a string made only of it. Surrogates are
# not valid in UTF-8 keys, so incrementing past U+D7FF jumps to U+E000.
_MAX_CHAR: Final = sys.maxunicode
_SURROGATES: Final = range(0xD800, 0xE000)


# ---------------------------------------------------------------------- helpers


def clamp_max_keys(value: int | None, default: int = MAX_LIST_KEYS) -> int:
    """A requested page size clamped to 1..1000 (``default`` when not given)."""
    if value is None:
        value = default
    return max(1, min(MAX_LIST_KEYS, value))


def key_after_prefix(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    The last character is incremented, dropping trailing U+10FFFF characters that cannot
    be; ``"a/b/"`` → ``"a/b0"``. None if ``prefix`` is empty or only U+10FFFF, when no
    such string exists (Garage: ``key_after_prefix``).
    """
    chars = prefix
    while chars:
        last = ord(chars[-1])
        chars = chars[:-1]
        if last >= _MAX_CHAR:
            continue
        nxt = last + 1
        if nxt in _SURROGATES:
            nxt = _SURROGATES.stop
        return chars + chr(nxt)
    return None


def common_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    """The common prefix ``key`` rolls up into, or None if it is listed as itself.

    ``key`` must start with ``prefix``. The common prefix is ``key`` up to and including the
    first ``delimiter`` after ``prefix``.
    """
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    return None if i < 0 else key[: i + len(delimiter)]


def encode_continuation_token(start: ListStart) -> str:
    """The ListObjectsV2 continuation token for a page starting at ``start``.

    ``[`` + base64(key) when the key is included, ``]`` + base64(key) when the page starts
    after it (design §10.8). The token is opaque to clients.
    """
    mark = "[" if start.inclusive else "]"
    return mark + base64.b64encode(start.key.encode()).decode("ascii")


def decode_continuation_token(token: str) -> ListStart:
    """The start of the page a continuation token stands for.

    Raises:
        S3Error: ``400 InvalidArgument`` if the token was not made by
            :func:`encode_continuation_token`.
    """
    if token[:1] in ("[", "]"):
        try:
            key = base64.b64decode(token[1:], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
            pass
        else:
            return ListStart(key, inclusive=token[0] == "[")
    raise S3Error.invalid_argument("The continuation token provided is incorrect")


def decode_upload_id(upload_id: str) -> bytes:
    """The 32-byte uuid of an upload id (its hex).

    Raises:
        S3Error: ``404 NoSuchUpload`` if it is not the hex of 32 bytes: no such upload can
            exist (Garage: ``decode_upload_id``).
    """
    try:
        raw = bytes.fromhex(upload_id)
    except ValueError:
        raw = b""
    if len(raw) != _UPLOAD_ID_BYTES:
        raise S3Error.no_such_upload(upload_id)
    return raw


# ---------------------------------------------------------------------- starts


@dataclass(frozen=True, slots=True)
class ListStart:
    """Where a listing page starts.

    Attributes:
        key: the first key that may hold entries of the page.
        inclusive: whether the entries of ``key`` itself belong to the page.
        after_sub: when ``inclusive``, only the entries of ``key`` whose sub (upload id)
            sorts after this one belong to the page.
    """

    key: str
    inclusive: bool = True
    after_sub: str | None = None

    def admits(self, key: str, sub: str) -> bool:
        """Whether the entry ``(key, sub)`` is at or after this start."""
        if key != self.key:
            return key > self.key
        if not self.inclusive:
            return False
        return self.after_sub is None or sub > self.after_sub


def _after_marker(marker: str, prefix: str, delimiter: str | None) -> ListStart | None:
    """The start after a V1 marker: past its whole common prefix, if it is inside one."""
    if marker < prefix:
        return ListStart(prefix)
    if marker.startswith(prefix) and (cp := common_prefix(marker, prefix, delimiter)):
        nxt = key_after_prefix(cp)
        return None if nxt is None else ListStart(nxt)
    return ListStart(marker, inclusive=False)


def list_objects_start(
    *,
    prefix: str,
    delimiter: str | None,
    v2: bool,
    marker: str | None = None,
    continuation_token: str | None = None,
    start_after: str | None = None,
) -> ListStart | None:
    """Where ListObjects (V1) or ListObjectsV2 starts.

    V2: the continuation token if any, else after ``start_after``, else at the prefix.
    V1: after ``marker`` (past its common prefix, see the module docs), else at the prefix.

    Returns:
        The start, or None when nothing can follow the marker (the page is empty).

    Raises:
        S3Error: ``400 InvalidArgument`` for a continuation token we did not make.
    """
    if v2:
        if continuation_token is not None:
            start = decode_continuation_token(continuation_token)
            return start if start.key >= prefix else ListStart(prefix)
        if start_after is not None and start_after >= prefix:
            return ListStart(start_after, inclusive=False)
        return ListStart(prefix)
    if marker is not None:
        return _after_marker(marker, prefix, delimiter)
    return ListStart(prefix)


def list_uploads_start(
    *,
    prefix: str,
    delimiter: str | None,
    key_marker: str | None = None,
    upload_id_marker: str | None = None,
) -> ListStart | None:
    """Where ListMultipartUploads starts.

    With ``key-marker`` alone: after that key (or past its common prefix). With both
    markers: the uploads of ``key-marker`` after ``upload-id-marker``, then the following
    keys; ``upload-id-marker=include`` includes every upload of ``key-marker`` (Garage's
    extension). ``upload-id-marker`` without ``key-marker`` is ignored, as S3 does.

    Raises:
        S3Error: ``404 NoSuchUpload`` for an upload id marker that is not an upload id.
    """
    if key_marker is None:
        return ListStart(prefix)
    if upload_id_marker is None:
        return _after_marker(key_marker, prefix, delimiter)
    if key_marker < prefix:
        return ListStart(prefix)
    if upload_id_marker == UPLOAD_ID_INCLUDE:
        return ListStart(key_marker)
    decode_upload_id(upload_id_marker)
    return ListStart(key_marker, after_sub=upload_id_marker.lower())


# ---------------------------------------------------------------------- the core


@dataclass(frozen=True, slots=True)
class ListEntry(Generic[T]):
    """One listed entry: an object (``sub == ""``) or an upload (``sub`` = upload id).

    Attributes:
        key: the object key.
        value: what the driver attached (size, ETag, timestamps...).
        sub: the position of the entry among the entries of its key.
    """

    key: str
    value: T
    sub: str = ""


@dataclass(frozen=True, slots=True)
class ListingPage(Generic[T]):
    """One page of a listing.

    Attributes:
        entries: the listed objects or uploads, in order.
        common_prefixes: the rolled-up common prefixes, in order.
        is_truncated: whether entries follow this page.
        next_start: where the next page starts, when truncated (for a V2 token).
        next_marker: the last entry of the page (its key, or its common prefix), when
            truncated: V1 ``NextMarker`` and ListMultipartUploads ``NextKeyMarker``.
        next_sub_marker: the sub (upload id) of the last entry when it is an upload:
            ListMultipartUploads ``NextUploadIdMarker``.
    """

    entries: tuple[ListEntry[T], ...] = ()
    common_prefixes: tuple[str, ...] = ()
    is_truncated: bool = False
    next_start: ListStart | None = None
    next_marker: str | None = None
    next_sub_marker: str | None = None

    @property
    def key_count(self) -> int:
        """Entries and common prefixes together (ListObjectsV2 ``KeyCount``)."""
        return len(self.entries) + len(self.common_prefixes)


@final
class Lister(Generic[T]):
    """Builds one listing page from sorted table pages, and says where to read next.

    Args:
        prefix: only keys starting with it are listed.
        delimiter: rolls keys up into common prefixes; None or ``""`` for a flat listing.
        max_entries: the most entries (plus common prefixes) of the page, >= 1.
        start: where the page starts (:func:`list_objects_start`,
            :func:`list_uploads_start`); None for a listing known to be empty.

    Attributes:
        page_size: a good number of keys per table read: a full page, plus one key that
            tells whether the listing is truncated (Garage reads ``max-keys + 1``). Any
            read size works.
    """

    __slots__ = (
        "_delimiter",
        "_done",
        "_entries",
        "_fetch_from",
        "_last",
        "_max",
        "_pos",
        "_prefix",
        "_prefixes",
        "_truncated",
        "page_size",
    )

    def __init__(
        self,
        *,
        prefix: str,
        delimiter: str | None,
        max_entries: int,
        start: ListStart | None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._prefix = prefix
        self._delimiter = delimiter or None
        self._max = max_entries
        self._pos = start
        self._done = start is None
        self._fetch_from = "" if start is None else start.key
        self._entries: list[ListEntry[T]] = []
        self._prefixes: list[str] = []
        self._truncated = False
        self._last: tuple[str, str | None] | None = None
        self.page_size: int = max_entries + 1

    @property
    def done(self) -> bool:
        """True once the page is complete: :meth:`result` may be called."""
        return self._done

    def next_fetch(self) -> str | None:
        """The key the next table read must start at (inclusive), or None when done."""
        return None if self._done else self._fetch_from

    def feed(
        self,
        entries: Iterable[ListEntry[T]],
        *,
        more: bool,
        last_key: str | None = None,
    ) -> None:
        """Processes the entries of one table read, in (key, sub) order.

        Args:
            entries: the entries of the keys read from :meth:`next_fetch` on; every entry
                of a key must be in the same read. Entries before the current position
                are skipped, so a read may overlap the previous one.
            more: whether the table may hold keys after this read (the read returned as
                many keys as it asked for). False ends the listing.
            last_key: the last key the read returned, when it may have returned keys
                without entries (an object with no upload left); by default the key of
                the last entry.
        """
        if self.done:
            raise RuntimeError("feed() on a finished Lister")
        for entry in entries:
            if last_key is None or entry.key > last_key:
                last_key = entry.key
            if not self._take(entry):
                return
        if not more or last_key is None:
            self._done = True
            return
        # Every key up to last_key has been seen: never read them again. The smallest
        # string after last_key is last_key + "\0".
        after_seen = last_key + "\0"
        assert self._pos is not None  # not done, so a position exists
        self._fetch_from = max(self._pos.key, after_seen)

    def _take(self, entry: ListEntry[T]) -> bool:
        """Adds one entry if it belongs to the page; False once the page is complete."""
        pos = self._pos
        assert pos is not None  # only None when done, and feed() is not called then
        if not pos.admits(entry.key, entry.sub):
            return True
        if not entry.key.startswith(self._prefix):
            # Reads start at or after the prefix, so a key outside it is past it.
            self._done = True
            return False
        if self._full():
            # One more entry exists: the page is truncated, and resumes at _pos.
            self._truncated = self._done = True
            return False
        cp = common_prefix(entry.key, self._prefix, self._delimiter)
        if cp is not None:
            self._prefixes.append(cp)
            self._last = (cp, None)
            nxt = key_after_prefix(cp)
            if nxt is None:
                self._done = True  # nothing sorts after this prefix
                return False
            self._pos = ListStart(nxt)
            return True
        self._entries.append(entry)
        self._last = (entry.key, entry.sub or None)
        self._pos = (
            ListStart(entry.key, after_sub=entry.sub)
            if entry.sub
            else ListStart(entry.key, inclusive=False)
        )
        return True

    def _full(self) -> bool:
        return len(self._entries) + len(self._prefixes) >= self._max

    def result(self) -> ListingPage[T]:
        """The page.

        Raises:
            RuntimeError: the page is not complete yet (:attr:`done` is False).
        """
        if not self._done:
            raise RuntimeError("result() before the Lister is done")
        if not self._truncated:
            return ListingPage(tuple(self._entries), tuple(self._prefixes))
        assert self._last is not None
        return ListingPage(
            tuple(self._entries),
            tuple(self._prefixes),
            is_truncated=True,
            next_start=self._pos,
            next_marker=self._last[0],
            next_sub_marker=self._last[1],
        )


def paginate(
    entries: Iterable[ListEntry[T]],
    *,
    prefix: str,
    delimiter: str | None,
    max_entries: int,
    start: ListStart | None,
) -> ListingPage[T]:
    """One listing page over sorted ``entries``, read lazily as far as the page needs.

    The whole-iterator twin of the :class:`Lister` loop (the iterator is one read with
    nothing after it): entries before ``start`` are skipped.
    """
    lister: Lister[T] = Lister(
        prefix=prefix, delimiter=delimiter, max_entries=max_entries, start=start
    )
    if not lister.done:
        lister.feed(entries, more=False)
    return lister.result()


# ---------------------------------------------------------------------- ListParts


def paginate_parts(
    parts: Sequence[tuple[int, P]],
    *,
    part_number_marker: int | None,
    max_parts: int,
) -> tuple[tuple[tuple[int, P], ...], int | None]:
    """One ListParts page: the parts after the marker, at most ``max_parts`` of them.

    Args:
        parts: ``(part number, info)`` of the finished parts, sorted by part number, one
            per number (the latest upload of each).
        part_number_marker: list the parts with a number greater than this.
        max_parts: the page size (clamp it with :func:`clamp_max_keys`).

    Returns:
        The parts of the page, and the ``NextPartNumberMarker`` if the listing is
        truncated (the last part number of the page), else None.
    """
    after = part_number_marker or 0
    rest = [p for p in parts if p[0] > after]
    if len(rest) > max_parts:
        page = tuple(rest[:max_parts])
        return page, page[-1][0]
    return tuple(rest), None
