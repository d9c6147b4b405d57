"""Byte ranges of GetObject/HeadObject: ``Range``, ``partNumber`` and ``Content-Range``.

Garage: ``parse_range_header`` and ``calculate_part_bounds`` of src/api/s3/get.rs (design
§10.4); RFC 7233 for the grammar. Pure functions over header values and sizes.

Rules
-----
- ``Range: bytes=first-last``, ``bytes=first-`` and ``bytes=-suffix`` select one range; the
  answer is ``206 Partial Content`` with ``Content-Range: bytes first-last/size``. ``last``
  past the end is clamped; a suffix longer than the object selects all of it.
- A range starting at or after the end of the object (and any range of an empty object, and
  ``bytes=-0``) is unsatisfiable: ``416 InvalidRange`` with ``Content-Range: bytes */size``.
- Several ranges (``bytes=0-1,5-6``) are not supported: the whole object is sent with 200,
  as RFC 7233 allows, unless none of them is satisfiable (416).
- A Range header that does not parse (another unit, ``last < first``, garbage) is ignored,
  as RFC 7233 §3.1 requires, and the whole object is sent.
- ``partNumber=n`` selects the bytes of part *n* (a non-multipart object has one part);
  with ``Range`` as well it is a ``400 InvalidRequest``; past the last part it is
  ``416 InvalidPartNumber`` (AWS's answer).
- ``x-amz-copy-source-range`` (UploadPartCopy) is stricter: exactly ``bytes=first-last``,
  inside the source object, else ``400 InvalidArgument``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import S3Error

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ByteRange",
    "check_range_or_part",
    "format_content_range",
    "parse_copy_source_range",
    "parse_range_header",
    "part_range",
]

# One byte-range-spec of RFC 7233 §2.1: "first-last", "first-" or "-suffix".
_RANGE_SPEC = re.compile(r"\s*(?:(?P<first>[0-9]+)-(?P<last>[0-9]*)|-(?P<suffix>[0-9]+))\s*")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """The bytes ``[start, end)`` of an object.

    Attributes:
        start: the first byte.
        end: one past the last byte (exclusive, unlike HTTP's inclusive ``last``).
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"invalid byte range [{self.start}, {self.end})")

    @property
    def length(self) -> int:
        """The number of bytes (the response's Content-Length)."""
        return self.end - self.start

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value for this range of an object of ``size`` bytes.

        Raises:
            ValueError: the range is empty (HTTP cannot express it; send a 200 instead).
        """
        return format_content_range(self.start, self.end, size)


def format_content_range(start: int, end: int, size: int) -> str:
    """``bytes start-(end-1)/size``, the Content-Range of the bytes ``[start, end)``.

    Raises:
        ValueError: the range is empty or does not fit in ``size``.
    """
    if not 0 <= start < end <= size:
        raise ValueError(f"no Content-Range for [{start}, {end}) of {size} bytes")
    return f"bytes {start}-{end - 1}/{size}"


def _parse_spec(spec: str, size: int) -> ByteRange | None:
    """One byte-range-spec: the range, or None if unsatisfiable; ValueError if malformed."""
    m = _RANGE_SPEC.fullmatch(spec)
    if m is None:
        raise ValueError(spec)
    if m["suffix"] is not None:
        suffix = int(m["suffix"])
        if suffix == 0 or size == 0:
            return None
        return ByteRange(max(0, size - suffix), size)
    first = int(m["first"])
    last = int(m["last"]) if m["last"] else None
    if last is not None and last < first:
        raise ValueError(spec)  # RFC 7233 §2.1: syntactically invalid
    if first >= size:
        return None
    end = size if last is None else min(last + 1, size)
    return ByteRange(first, end)


def parse_range_header(value: str | None, size: int) -> ByteRange | None:
    """The range a GET/HEAD ``Range`` header asks for, or None for the whole object.

    Args:
        value: the Range header, or None if absent.
        size: the object's size in bytes.

    Returns:
        The single satisfiable range, or None when there is no header, it does not parse,
        or it names several ranges (all answered with the whole object).

    Raises:
        S3Error: ``416 InvalidRange`` (with ``Content-Range: bytes */size``) when no range
            of the header is satisfiable.
    """
    if value is None:
        return None
    unit, sep, specs = value.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    try:
        ranges = [_parse_spec(spec, size) for spec in specs.split(",")]
    except ValueError:
        return None
    satisfiable = [r for r in ranges if r is not None]
    if not satisfiable:
        raise S3Error.invalid_range(size)
    if len(ranges) > 1:
        # Multipart/byteranges answers are not supported (neither in Garage): whole object.
        return None
    return satisfiable[0]


def check_range_or_part(range_header: str | None, part_number: int | None) -> None:
    """Refuses a GetObject/HeadObject that has both a ``Range`` and a ``partNumber``.

    Raises:
        S3Error: ``400 InvalidRequest``.
    """
    if range_header is not None and part_number is not None:
        raise S3Error.invalid_request("Cannot specify both partNumber and Range header")


def part_range(part_sizes: Sequence[int], part_number: int) -> ByteRange:
    """The bytes of part ``part_number`` (1-based) of an object made of ``part_sizes``.

    A non-multipart object is one part: pass ``[size]``. The response carries
    ``x-amz-mp-parts-count: len(part_sizes)``. A part of zero bytes gives an empty range,
    which has no Content-Range: answer it like a whole (empty) object.

    Raises:
        S3Error: ``416 InvalidPartNumber`` if the object has no such part.
    """
    if not 1 <= part_number <= len(part_sizes):
        raise S3Error.invalid_part_number(part_number, len(part_sizes))
    start = sum(part_sizes[: part_number - 1])
    return ByteRange(start, start + part_sizes[part_number - 1])


def parse_copy_source_range(value: str, size: int) -> ByteRange:
    """The ``x-amz-copy-source-range`` of UploadPartCopy: exactly ``bytes=first-last``.

    Args:
        value: the header value.
        size: the size of the source object.

    Raises:
        S3Error: ``400 InvalidArgument`` if the value is not of that form or the range
            does not lie inside the source object.
    """
    m = re.fullmatch(r"bytes=([0-9]+)-([0-9]+)", value.strip())
    if m is None:
        raise S3Error.invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last "
            "where first and last are the zero-based offsets of the first and last bytes "
            "to copy"
        )
    first, last = int(m[1]), int(m[2])
    if first > last or last >= size:
        raise S3Error.invalid_argument(
            f"Range specified is not valid for source object of size: {size}"
        )
    return ByteRange(first, last + 1)
