"""Replication factor and consistency mode, and the quorums they imply.

Garage: src/rpc/replication_mode.rs. With ``rf`` replicas per partition, a read quorum R
and a write quorum W with R + W > rf make every read meet at least one replica that took
the latest acknowledged write (read-after-write). ``degraded`` lowers R to 1 (reads survive
more failures, at the cost of read-after-write); ``dangerous`` lowers W to 1 as well.

| mode       | read quorum       | write quorum           |
|------------|-------------------|------------------------|
| consistent | ceil(rf / 2)      | rf + 1 - ceil(rf / 2)  |
| degraded   | 1                 | rf + 1 - ceil(rf / 2)  |
| dangerous  | 1                 | 1                      |
"""

from __future__ import annotations

from dataclasses import dataclass

from garage_util.config import ConsistencyMode

__all__ = ["ReplicationParams"]


@dataclass(frozen=True, slots=True)
class ReplicationParams:
    """How many copies of each partition the cluster keeps, and how many must answer.

    Raises:
        ValueError: when ``replication_factor`` is below 1.
    """

    replication_factor: int
    consistency_mode: ConsistencyMode = ConsistencyMode.CONSISTENT

    def __post_init__(self) -> None:
        if self.replication_factor < 1:
            raise ValueError(f"replication_factor must be >= 1, got {self.replication_factor}")

    @property
    def read_quorum(self) -> int:
        """Replies a sharded read waits for."""
        if self.consistency_mode is not ConsistencyMode.CONSISTENT:
            return 1
        return -(-self.replication_factor // 2)

    @property
    def write_quorum(self) -> int:
        """Acknowledgements a sharded write waits for."""
        if self.consistency_mode is ConsistencyMode.DANGEROUS:
            return 1
        return self.replication_factor + 1 - -(-self.replication_factor // 2)

    @property
    def is_read_after_write_consistent(self) -> bool:
        """True when every read quorum intersects every write quorum."""
        return self.read_quorum + self.write_quorum > self.replication_factor
