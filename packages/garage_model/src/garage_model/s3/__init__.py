"""The S3 tables: objects, versions, block references and multipart uploads.

Garage: src/model/s3/ (design §8.2-§8.4). Four sharded tables, linked by the deletion
cascade their ``updated`` hooks run inside each write transaction:

====================  =============================================  ===================
table                 entry (partition key / sort key)               cascades into
====================  =============================================  ===================
``object``            :class:`Object` (bucket id / object key)       version, multipart
``multipart_upload``  :class:`MultipartUpload` (upload id / -)       version
``version``           :class:`Version` (version uuid / -)            block_ref
``block_ref``         :class:`BlockRef` (block hash / version uuid)  block refcounts
====================  =============================================  ===================

Build them bottom-up, each schema taking the ``TableData`` of the tables it cascades into
(``data(schema)`` stands for ``TableData(schema, replication, db, node_id=me)``)::

    block_refs = data(BlockRefSchema(block_manager))
    versions = data(VersionSchema(block_refs))
    mpu_counter = IndexCounter(MPU_COUNTER_TABLE, db,
                               data(CounterSchema(MPU_COUNTER_TABLE, UuidKey, EmptyKey)), me)
    mpus = data(MpuSchema(versions, mpu_counter))
    object_counter = IndexCounter(OBJECT_COUNTER_TABLE, db,
                                  data(CounterSchema(OBJECT_COUNTER_TABLE, UuidKey, EmptyKey)), me)
    objects = data(ObjectSchema(versions, mpus, object_counter))

Ids are keys through :class:`garage_model.bucket_table.UuidKey` (an id is its own
partition hash; its bytes are its sort key).
"""

from .block_ref_table import BlockRef as BlockRef
from .block_ref_table import BlockRefHooks as BlockRefHooks
from .block_ref_table import BlockRefSchema as BlockRefSchema
from .block_ref_table import count_live_refs as count_live_refs
from .mpu_table import BYTES as BYTES
from .mpu_table import MPU_COUNTER_TABLE as MPU_COUNTER_TABLE
from .mpu_table import PARTS as PARTS
from .mpu_table import UPLOADS as UPLOADS
from .mpu_table import ChecksumAlgorithm as ChecksumAlgorithm
from .mpu_table import ChecksumValue as ChecksumValue
from .mpu_table import MpuPart as MpuPart
from .mpu_table import MpuSchema as MpuSchema
from .mpu_table import MultipartUpload as MultipartUpload
from .object_table import OBJECT_COUNTER_TABLE as OBJECT_COUNTER_TABLE
from .object_table import OBJECTS as OBJECTS
from .object_table import UNFINISHED_UPLOADS as UNFINISHED_UPLOADS
from .object_table import Aborted as Aborted
from .object_table import Complete as Complete
from .object_table import DeleteMarker as DeleteMarker
from .object_table import FirstBlock as FirstBlock
from .object_table import Inline as Inline
from .object_table import Object as Object
from .object_table import ObjectFilter as ObjectFilter
from .object_table import ObjectFilterKind as ObjectFilterKind
from .object_table import ObjectSchema as ObjectSchema
from .object_table import ObjectVersion as ObjectVersion
from .object_table import ObjectVersionData as ObjectVersionData
from .object_table import ObjectVersionEncryption as ObjectVersionEncryption
from .object_table import ObjectVersionMeta as ObjectVersionMeta
from .object_table import ObjectVersionMetaInner as ObjectVersionMetaInner
from .object_table import ObjectVersionState as ObjectVersionState
from .object_table import Plaintext as Plaintext
from .object_table import SseC as SseC
from .object_table import Uploading as Uploading
from .version_table import MpuBacklink as MpuBacklink
from .version_table import ObjectBacklink as ObjectBacklink
from .version_table import Version as Version
from .version_table import VersionBacklink as VersionBacklink
from .version_table import VersionBlock as VersionBlock
from .version_table import VersionSchema as VersionSchema

__all__ = [
    "BYTES",
    "MPU_COUNTER_TABLE",
    "OBJECTS",
    "OBJECT_COUNTER_TABLE",
    "PARTS",
    "UNFINISHED_UPLOADS",
    "UPLOADS",
    "Aborted",
    "BlockRef",
    "BlockRefHooks",
    "BlockRefSchema",
    "ChecksumAlgorithm",
    "ChecksumValue",
    "Complete",
    "DeleteMarker",
    "FirstBlock",
    "Inline",
    "MpuBacklink",
    "MpuPart",
    "MpuSchema",
    "MultipartUpload",
    "Object",
    "ObjectBacklink",
    "ObjectFilter",
    "ObjectFilterKind",
    "ObjectSchema",
    "ObjectVersion",
    "ObjectVersionData",
    "ObjectVersionEncryption",
    "ObjectVersionMeta",
    "ObjectVersionMetaInner",
    "ObjectVersionState",
    "Plaintext",
    "SseC",
    "Uploading",
    "Version",
    "VersionBacklink",
    "VersionBlock",
    "VersionSchema",
    "count_live_refs",
]
