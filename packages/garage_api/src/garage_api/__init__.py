"""The S3, K2V and admin HTTP APIs.

This layer is not built yet (see issue #6); it exports nothing so far.
"""

__all__: list[str] = []
