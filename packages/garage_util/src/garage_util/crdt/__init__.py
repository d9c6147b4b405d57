"""Conflict-free replicated data types (Garage: src/util/crdt/).

Every metadata row in Garage is a CRDT: writes send the new state to a quorum, replicas
merge on arrival, and no merge order can make them disagree. See :mod:`._base` for the laws
and the merge rule of plain values; :mod:`garage_util.testing` checks the laws for
embedders' own types.
"""

from ._base import Crdt as Crdt
from ._base import CrdtStruct as CrdtStruct
from ._base import Ordered as Ordered
from ._base import merge_optional as merge_optional
from ._base import merge_values as merge_values
from ._lww import Lww as Lww
from ._lww import LwwMap as LwwMap
from ._map import Map as Map
from ._simple import Bool as Bool
from ._simple import Deletable as Deletable

__all__ = [
    "Bool",
    "Crdt",
    "CrdtStruct",
    "Deletable",
    "Lww",
    "LwwMap",
    "Map",
    "Ordered",
    "merge_optional",
    "merge_values",
]
