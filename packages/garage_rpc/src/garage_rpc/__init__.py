"""garage_rpc: encrypted peer-to-peer RPC, cluster membership and the cluster layout.

- :mod:`garage_rpc.net`: the transport (node keys, secret handshake, encrypted multiplexed
  connections with priorities and attached streams, endpoints).
- :mod:`garage_rpc.peering`: keeps a full mesh of connections, measures round trips.
- :mod:`garage_rpc.system`: status exchange between nodes, known nodes, cluster health.
- :mod:`garage_rpc.layout`: the zone-aware assignment of partitions to nodes and its
  history; :mod:`garage_rpc.layout_manager` persists it and spreads it between nodes.
- :mod:`garage_rpc.rpc_helper`: timeouts, preference order and quorum calls.

This package re-exports the names most users need; the submodules hold the rest.
"""

from .layout import LayoutError as LayoutError
from .layout import LayoutHelper as LayoutHelper
from .layout import LayoutHistory as LayoutHistory
from .layout import LayoutParameters as LayoutParameters
from .layout import LayoutVersion as LayoutVersion
from .layout import NodeRole as NodeRole
from .layout_manager import LayoutManager as LayoutManager
from .net import PRIO_BACKGROUND as PRIO_BACKGROUND
from .net import PRIO_HIGH as PRIO_HIGH
from .net import PRIO_NORMAL as PRIO_NORMAL
from .net import Endpoint as Endpoint
from .net import NetApp as NetApp
from .net import NodeId as NodeId
from .net import NodeKey as NodeKey
from .net import RpcError as RpcError
from .peering import Peering as Peering
from .peering import PeeringConfig as PeeringConfig
from .replication_mode import ReplicationParams as ReplicationParams
from .rpc_helper import QuorumError as QuorumError
from .rpc_helper import RequestStrategy as RequestStrategy
from .rpc_helper import RpcHelper as RpcHelper
from .system import ClusterHealth as ClusterHealth
from .system import HealthStatus as HealthStatus
from .system import System as System

__all__ = [
    "PRIO_BACKGROUND",
    "PRIO_HIGH",
    "PRIO_NORMAL",
    "ClusterHealth",
    "Endpoint",
    "HealthStatus",
    "LayoutError",
    "LayoutHelper",
    "LayoutHistory",
    "LayoutManager",
    "LayoutParameters",
    "LayoutVersion",
    "NetApp",
    "NodeId",
    "NodeKey",
    "NodeRole",
    "Peering",
    "PeeringConfig",
    "QuorumError",
    "ReplicationParams",
    "RequestStrategy",
    "RpcError",
    "RpcHelper",
    "System",
]
