"""Reading access keys (Garage: src/model/helper/key.rs).

Lookups by id distinguish an *existing* key (present, usable) from an *internal* one
(present or deleted: what repairs and permission clean-ups need). Pattern search serves the
CLI and admin API (``garage key info <id prefix or name>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeVar, final

from garage_model.key_table import Key, KeyFilter
from garage_table.schema import DeletedFilter, EmptyKey, StringKey

from ._errors import BadRequestError, NoSuchAccessKeyError

if TYPE_CHECKING:
    from garage_table import Table
    from garage_table.schema import SortKey, TableEntry

__all__ = ["KeyHelper", "scan_partition"]

E = TypeVar("E", bound="TableEntry[Any, Any]")

#: Entries per range read when listing a whole table (Garage's admin listings use 1000 too).
_PAGE: Final = 1000
#: Most candidates a key search reads: more than one is already ambiguous, the rest are
#: only counted in the error message.
_SEARCH_LIMIT: Final = 10


async def scan_partition(table: Table[E], filter: object | None) -> list[E]:
    """Every entry of the ``EmptyKey`` partition of ``table`` that passes ``filter``, in
    sort-key order, read page by page."""
    out: list[E] = []
    start: SortKey | None = None
    while True:
        page = await table.get_range(EmptyKey(), start, filter=filter, limit=_PAGE)
        if start is not None:
            # The start key is inclusive: skip the entry that ended the previous page.
            first = start.sort_key()
            page = [e for e in page if e.sort_key().sort_key() != first]
        out += page
        if not page:
            return out
        start = page[-1].sort_key()


@final
class KeyHelper:
    """Lookups in the key table.

    Args:
        key_table: the ``key`` table of this node.
    """

    __slots__ = ("_keys",)

    def __init__(self, key_table: Table[Key]) -> None:
        self._keys = key_table

    @property
    def key_table(self) -> Table[Key]:
        """The key table."""
        return self._keys

    async def get_internal_key(self, key_id: str) -> Key:
        """The key with this id, even if deleted.

        Raises:
            NoSuchAccessKeyError: when no key ever had this id.
        """
        key = await self._keys.get(EmptyKey(), StringKey(key_id))
        if key is None:
            raise NoSuchAccessKeyError(key_id)
        return key

    async def get_existing_key(self, key_id: str) -> Key:
        """The key with this id, if not deleted.

        Raises:
            NoSuchAccessKeyError: when there is no such key, or it was deleted.
        """
        key = await self._keys.get(EmptyKey(), StringKey(key_id))
        if key is None or key.is_deleted:
            raise NoSuchAccessKeyError(key_id)
        return key

    async def get_existing_matching_key(self, pattern: str) -> Key:
        """The one existing key whose id is ``pattern``, or whose id starts with it, or
        whose name contains it (case-insensitive).

        Raises:
            NoSuchAccessKeyError: when no key matches.
            BadRequestError: when several keys match and none has exactly this id.
        """
        candidates = await self._keys.get_range(
            EmptyKey(), None, filter=KeyFilter.matching(pattern), limit=_SEARCH_LIMIT
        )
        exact = [k for k in candidates if k.key_id == pattern]
        if exact:
            return exact[0]
        if not candidates:
            raise NoSuchAccessKeyError(pattern)
        if len(candidates) > 1:
            more = "+" if len(candidates) == _SEARCH_LIMIT else ""
            raise BadRequestError(
                f"{len(candidates)}{more} access keys match {pattern!r}; give more of the key id"
            )
        return candidates[0]

    async def list_keys(self) -> list[Key]:
        """Every existing (not deleted) key, sorted by id."""
        return await scan_partition(self._keys, KeyFilter.deleted_state(DeletedFilter.NOT_DELETED))
