"""Buckets, keys, objects, versions, multipart uploads, counters and the block manager.

This layer is not built yet (see issue #5); it exports nothing so far.
"""

__all__: list[str] = []
