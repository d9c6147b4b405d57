"""Handlers of S3 operations (filled in by issue #8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from garage_api.http import Response

    from ._api import ReqCtx
    from ._router import Operation

__all__ = ["HANDLERS"]

HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {}
