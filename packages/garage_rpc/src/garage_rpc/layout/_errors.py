"""The exceptions of the cluster layout.

Every error the layout raises on purpose derives from :class:`LayoutError`, itself a
:class:`~garage_util.errors.GarageError`. Two causes are told apart because the operator
answers them differently: a :class:`LayoutVersionError` means "you are applying on top of
a layout you have not looked at" (run ``garage layout show`` again), an
:class:`InvalidLayoutError` means "the roles and parameters you staged cannot be
assigned" (fix the staged roles). Decoding errors stay garage_util's ``DecodeError``.
"""

from __future__ import annotations

from garage_util.errors import GarageError

__all__ = ["InvalidLayoutError", "LayoutError", "LayoutVersionError"]


class LayoutError(GarageError):
    """Base of every error that the cluster layout raises on purpose."""


class LayoutVersionError(LayoutError):
    """Raised by ``apply_staged_changes`` when the version asked for is not current + 1.

    Garage requires the operator to name the version they apply, so that a layout computed
    by ``garage layout show`` is not applied on top of a newer one that appeared meanwhile
    (two different layouts with one number would split the cluster).

    Attributes:
        expected: the only version number that can be applied now (current + 1).
        given: the version number that was asked for.
    """

    def __init__(self, expected: int, given: int) -> None:
        self.expected = expected
        self.given = given
        super().__init__(
            f"invalid new layout version {given}: the current layout version is "
            f"{expected - 1}, so the next one must be {expected} "
            "(run `garage layout show` to review the proposed changes)"
        )


class InvalidLayoutError(LayoutError):
    """Raised when the staged roles and parameters cannot give a valid assignment.

    The message says which rule is broken (too few storage nodes for the replication
    factor, too few zones for the zone redundancy, a node with capacity 0, too little
    capacity to store every partition...), in words the operator can act on. Also raised by
    :meth:`LayoutVersion.check` callers when a computed or received layout is inconsistent.
    """
