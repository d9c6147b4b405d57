"""Encrypted peer-to-peer RPC, cluster membership and the zone-aware cluster layout.

This layer is not built yet (see issue #3); it exports nothing so far.
"""

__all__: list[str] = []
