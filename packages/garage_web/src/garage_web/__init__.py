"""Static websites served from buckets (reuses the S3 read path of garage_api).

This layer is not built yet (see issue #9); it exports nothing so far.
"""

__all__: list[str] = []
