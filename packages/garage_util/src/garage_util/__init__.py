"""garage_util: the bottom layer of Garage in Python.

What every other layer stands on, with no network, HTTP or server code:

- ids and hashes (:class:`FixedBytes32`, :func:`blake2sum`, :func:`fasthash`, ...);
- the logical clock of LWW timestamps (:mod:`garage_util.clock`);
- CRDTs (:mod:`garage_util.crdt`: ``Lww``, ``LwwMap``, ``Map``, ``Bool``, ``Deletable``);
- canonical msgpack encoding with versioned formats (:mod:`garage_util.encode`);
- the ``garage.toml`` model (:mod:`garage_util.config`);
- background workers (:mod:`garage_util.background`);
- the metadata database with sqlite and lmdb engines (:mod:`garage_util.db`).

The submodules are imported on demand (``from garage_util.db import open_db``); this
package re-exports the small, always-needed names.
"""

from .clock import increment_logical_clock as increment_logical_clock
from .clock import now_msec as now_msec
from .data import HASH_LEN as HASH_LEN
from .data import FixedBytes32 as FixedBytes32
from .data import Hash as Hash
from .data import Uuid as Uuid
from .data import blake2sum as blake2sum
from .data import fasthash as fasthash
from .data import gen_uuid as gen_uuid
from .data import md5sum as md5sum
from .data import sha256sum as sha256sum
from .encode import Versioned as Versioned
from .encode import decode_versioned as decode_versioned
from .encode import encode_versioned as encode_versioned
from .encode import pack as pack
from .encode import unpack as unpack
from .errors import ConfigError as ConfigError
from .errors import DbError as DbError
from .errors import DecodeError as DecodeError
from .errors import GarageError as GarageError
from .errors import TransactionAborted as TransactionAborted
from .errors import UnknownVersionError as UnknownVersionError

__all__ = [
    "HASH_LEN",
    "ConfigError",
    "DbError",
    "DecodeError",
    "FixedBytes32",
    "GarageError",
    "Hash",
    "TransactionAborted",
    "UnknownVersionError",
    "Uuid",
    "Versioned",
    "blake2sum",
    "decode_versioned",
    "encode_versioned",
    "fasthash",
    "gen_uuid",
    "increment_logical_clock",
    "md5sum",
    "now_msec",
    "pack",
    "sha256sum",
    "unpack",
]
