"""The encrypted, multiplexed peer-to-peer transport (Garage: src/net/).

Every pair of nodes talks over one TCP connection, authenticated and encrypted by a secret
handshake (Secure Scuttlebutt's SHS) and box streams, on which many calls run at once in
both directions, each with a priority, an optional attached byte stream of any length
(blocks), flow control and cancellation. What a caller sees::

    PING = Endpoint("garage_net/peering.rs/Ping", Ping, Ping)

    async def handle_ping(msg: Ping, from_node: NodeId, stream: ByteReceiveStream | None):
        return Ping(msg.id), None

    netapp = NetApp(NodeKey.load_or_create(metadata_dir), rpc_secret)
    netapp.endpoint(PING, handle_ping)
    async with anyio.create_task_group() as tg:
        addr = await tg.start(netapp.run, ("0.0.0.0", 3901))
        await netapp.connect(peer_id, ("10.0.0.2", 3901))
        pong = await netapp.call(peer_id, PING, Ping(1), prio=PRIO_HIGH)

Membership (who to connect to, pings, peer lists) is built on top, with
:meth:`NetApp.on_connected` / :meth:`NetApp.on_disconnected` and :meth:`NetApp.connect`.
"""

from ._conn import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from ._endpoint import Endpoint as Endpoint
from ._endpoint import Handler as Handler
from ._errors import HandshakeError as HandshakeError
from ._errors import MessageTooLarge as MessageTooLarge
from ._errors import NodeKeyError as NodeKeyError
from ._errors import NoSuchEndpoint as NoSuchEndpoint
from ._errors import NotConnected as NotConnected
from ._errors import PeerDisconnected as PeerDisconnected
from ._errors import ProtocolError as ProtocolError
from ._errors import RemoteError as RemoteError
from ._errors import RpcError as RpcError
from ._errors import RpcTimeout as RpcTimeout
from ._errors import VersionMismatch as VersionMismatch
from ._framing import PRIO_BACKGROUND as PRIO_BACKGROUND
from ._framing import PRIO_HIGH as PRIO_HIGH
from ._framing import PRIO_NORMAL as PRIO_NORMAL
from ._framing import PRIO_PRIMARY as PRIO_PRIMARY
from ._framing import PRIO_SECONDARY as PRIO_SECONDARY
from ._keys import NodeId as NodeId
from ._keys import NodeKey as NodeKey
from ._netapp import DEFAULT_HANDSHAKE_TIMEOUT_S as DEFAULT_HANDSHAKE_TIMEOUT_S
from ._netapp import ConnectionInfo as ConnectionInfo
from ._netapp import NetApp as NetApp
from ._netapp import NetAppStatistics as NetAppStatistics
from ._netapp import RpcCallStatistics as RpcCallStatistics
from ._netapp import SocketAddr as SocketAddr
from ._session import GARAGE_VERSION_TAG as GARAGE_VERSION_TAG
from ._stream import AttachedStream as AttachedStream

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT_S",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "GARAGE_VERSION_TAG",
    "PRIO_BACKGROUND",
    "PRIO_HIGH",
    "PRIO_NORMAL",
    "PRIO_PRIMARY",
    "PRIO_SECONDARY",
    "AttachedStream",
    "ConnectionInfo",
    "Endpoint",
    "Handler",
    "HandshakeError",
    "MessageTooLarge",
    "NetApp",
    "NetAppStatistics",
    "NoSuchEndpoint",
    "NodeId",
    "NodeKey",
    "NodeKeyError",
    "NotConnected",
    "PeerDisconnected",
    "ProtocolError",
    "RemoteError",
    "RpcCallStatistics",
    "RpcError",
    "RpcTimeout",
    "SocketAddr",
    "VersionMismatch",
]
