"""garage_model: the data model of a Garage node, and the node's composition root.

- :mod:`garage_model.block`: content-addressed block files, their refcounts, the block RPC,
  resync, scrub and repair;
- the full-copy tables :mod:`~garage_model.bucket_table`,
  :mod:`~garage_model.bucket_alias_table`, :mod:`~garage_model.key_table` and
  :mod:`~garage_model.permission`, with the helpers of :mod:`garage_model.helper`;
- the sharded S3 tables of :mod:`garage_model.s3` (objects, versions, block refs, multipart
  uploads) with their deletion cascade, and :mod:`~garage_model.index_counter`;
- :class:`Garage`: every part of a node built from its configuration, and run.
"""

from .garage import Garage as Garage
from .garage import GarageTimings as GarageTimings

__all__ = ["Garage", "GarageTimings"]
