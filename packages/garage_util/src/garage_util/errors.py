"""The exceptions of garage_util.

Every error raised on purpose by this package derives from :class:`GarageError`, so that an
embedder can catch "anything Garage said no to" in one clause. Each subclass names its cause
(the culprit), not the place where it was noticed. Upper layers define their own bases
(``RpcError``, ``TableError``, ``S3Error``) and translate at their boundary; this module never
names a network, HTTP or runtime library.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DbError",
    "DecodeError",
    "GarageError",
    "TransactionAborted",
    "UnknownVersionError",
]


class GarageError(Exception):
    """Base of every error that garage_util raises on purpose."""


class DecodeError(GarageError, ValueError):
    """Raised when stored or received bytes do not decode as the expected type.

    The message names the type that was expected and what was wrong with the bytes.
    """


class UnknownVersionError(DecodeError):
    """Raised when versioned bytes carry a marker that no known format of the type uses.

    This usually means the bytes were written by a newer release of Garage (downgrade) or
    belong to another type altogether.
    """


class ConfigError(GarageError, ValueError):
    """Raised when the configuration is invalid.

    Attributes:
        key: the dotted name of the offending key (``"s3_api.s3_region"``), or ``""`` when
            the whole file is at fault (unreadable, not TOML).
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"invalid configuration: {key}: {reason}" if key else reason)


class DbError(GarageError):
    """Raised when the metadata database refuses an operation or is unusable.

    Engine-specific exceptions (``sqlite3.Error``, ``lmdb.Error``) are translated into this
    at the engine boundary, with the original chained as ``__cause__``.
    """


class TransactionAborted(DbError):
    """Raised out of ``Db.transaction`` when the transaction function called ``tx.abort()``.

    Nothing the transaction wrote is visible. ``value`` is what was passed to ``abort``.
    """

    def __init__(self, value: object = None) -> None:
        self.value = value
        super().__init__(f"transaction aborted: {value!r}")
