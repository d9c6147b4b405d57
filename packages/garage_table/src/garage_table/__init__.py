"""Replicated CRDT tables with quorums, read repair, Merkle anti-entropy and tombstone GC.

This layer is not built yet (see issue #4); it exports nothing so far.
"""

__all__: list[str] = []
