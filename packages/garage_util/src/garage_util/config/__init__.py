"""The garage.toml configuration: one frozen value, validated once, at startup.

Garage: src/util/config.rs, doc/book/reference-manual/configuration.md.

Theory of operation
-------------------
:func:`load_config` is the I/O shell: it reads the file as UTF-8 and hands the text to
:func:`parse_config` together with the directory the file lives in. ``parse_config`` is the
core. It validates the whole document and returns a :class:`Config`; the only I/O it does
is reading secret files. The process environment is never read by the core: callers pass
``env`` explicitly (``load_config`` defaults it to ``os.environ``), and the CLI passes its
flags as :class:`SecretOverrides`.

Validation stops at the first problem and raises
:class:`~garage_util.errors.ConfigError` with the dotted key at fault
(``"s3_api.s3_region"``, ``"data_dir[1].capacity"``) and a reason a user can act on:

1. Keys. Each table's keys are checked against the keys it accepts *before* any value is
   read, so a typo is reported as the typo, with a "did you mean" hint, and not as the
   required key that it hides. **This differs from Rust Garage on purpose**: its serde
   structs ignore unknown keys, so a misspelt optional key there silently keeps its default.
   Keys that older Garage versions accepted (``sled_*``, ``consul_host``...) get a message
   saying what replaced them.
2. Types. Each value must have the TOML type of its key (``true`` is not an integer) and
   the message names the expected type. Values of secret keys are never echoed.
3. Values. Ranges, sizes and durations (see ``garage_util.config._units``), addresses, the
   legacy ``replication_mode`` (converted to ``replication_factor`` + ``consistency_mode``,
   and exclusive with them), the combinations that go together (``client_cert`` with
   ``client_key``; ``capacity`` unless ``read_only``).
4. Paths. Relative paths in the file are resolved against the directory of the file
   (``base_dir``), lexically, without touching the file system. Paths given in the
   environment or on the command line are used as given (relative to the working
   directory, like any command-line path). A Unix socket address must be absolute.
5. Secrets. ``rpc_secret``, ``admin.admin_token`` and ``admin.metrics_token`` may each be
   given inline or as a file (``X`` or ``X_file``), in three places. The first place that
   gives one wins: command line (:class:`SecretOverrides`) > environment
   (``GARAGE_RPC_SECRET``, ``GARAGE_RPC_SECRET_FILE``...) > configuration file. Giving both
   ``X`` and ``X_file`` in one place is an error, even in a place that loses. Empty
   environment variables count as unset. A secret file has its trailing whitespace
   stripped and is refused when its mode gives any permission to group or others, unless
   ``allow_world_readable_secrets`` is true (again: command line > environment > file).
   ``rpc_secret`` must be 64 hex digits and is stored as 32 bytes; the repr of every value
   here hides secrets.

Host names are never resolved here: resolving is I/O that can fail transiently, and the
peering code retries it (Garage resolves ``bootstrap_peers`` while parsing, so a DNS hiccup
at startup is fatal there).

Layout
------
This package holds only the public surface; the code lives in private modules, one idea
each. ``_model``: the frozen values (:class:`Config` and its parts). ``_reader``: reading
TOML tables, with key checking and "did you mean" hints (steps 1 and 2). ``_parse``: values
and sections (step 3), :func:`parse_config` and :func:`load_config`. ``_secrets``: secret
sources, files and ``rpc_secret`` (step 5). ``_units``: sizes and durations.
"""

from ._model import AdminConfig as AdminConfig
from ._model import BindAddr as BindAddr
from ._model import BootstrapPeer as BootstrapPeer
from ._model import Config as Config
from ._model import ConsistencyMode as ConsistencyMode
from ._model import ConsulDiscoveryApi as ConsulDiscoveryApi
from ._model import ConsulDiscoveryConfig as ConsulDiscoveryConfig
from ._model import DataDir as DataDir
from ._model import DbEngine as DbEngine
from ._model import K2VApiConfig as K2VApiConfig
from ._model import KubernetesDiscoveryConfig as KubernetesDiscoveryConfig
from ._model import S3ApiConfig as S3ApiConfig
from ._model import SecretOverrides as SecretOverrides
from ._model import TcpAddr as TcpAddr
from ._model import UnixSocketAddr as UnixSocketAddr
from ._model import WebConfig as WebConfig
from ._parse import load_config as load_config
from ._parse import parse_config as parse_config
from ._units import parse_duration as parse_duration
from ._units import parse_size as parse_size

__all__ = [
    "AdminConfig",
    "BindAddr",
    "BootstrapPeer",
    "Config",
    "ConsistencyMode",
    "ConsulDiscoveryApi",
    "ConsulDiscoveryConfig",
    "DataDir",
    "DbEngine",
    "K2VApiConfig",
    "KubernetesDiscoveryConfig",
    "S3ApiConfig",
    "SecretOverrides",
    "TcpAddr",
    "UnixSocketAddr",
    "WebConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]
