"""``garage status`` and ``garage layout ...``: the cluster as the CLI sees and changes it
(Garage: src/garage/cli/cmd.rs, cli/layout.rs).

The layout commands work as in Garage: the CLI pulls the node's layout history
(``PullClusterLayout``), changes it locally with the pure layout operations
(:meth:`LayoutHistory.stage_role`, ``apply_staged_changes``...), and sends it back; the
node merges it (a CRDT merge, so concurrent operators converge) and pushes it to its
peers. Computing an assignment is CPU work done here, in a worker thread, so the node
never stalls on it.

``layout apply --version N`` must name the current version + 1: the operator confirms
they apply the changes they reviewed with ``layout show`` on top of the layout they saw.

Node ids are given as hex prefixes, matched against the nodes the node knows and the
nodes of the layout: exactly one must match (:func:`find_matching_node`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio

from garage_rpc.layout import (
    InvalidLayoutError,
    LayoutHistory,
    LayoutParameters,
    LayoutVersionError,
    NodeRole,
    UpdateTrackers,
    ZoneRedundancy,
    format_bytes,
    format_summary,
)
from garage_rpc.layout_manager import PULL_LAYOUT, PullLayout
from garage_rpc.system import GET_KNOWN_NODES, DiskSpace, GetKnownNodes, KnownNode
from garage_util.clock import now_msec
from garage_util.config import parse_size

from ._cli_client import CliError
from ._cli_format import format_table, short
from .admin_rpc import AdvertiseLayout, ConnectNode, Done, GetHealth, HealthReport

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from garage_rpc.layout import LayoutVersion
    from garage_util.data import FixedBytes32

    from ._cli_client import Client

__all__ = [
    "ZONE_REDUNDANCY_MAX",
    "Output",
    "find_matching_node",
    "layout_apply",
    "layout_assign",
    "layout_config",
    "layout_history",
    "layout_remove",
    "layout_revert",
    "layout_show",
    "layout_skip_dead_nodes",
    "node_connect",
    "parse_capacity",
    "parse_zone_redundancy",
    "stage_assign",
    "status",
]

#: What ``-r`` accepts for "as many zones as possible" (Garage also takes "none" for it).
ZONE_REDUNDANCY_MAX: Final = ("max", "maximum", "none")
_MINUTE_S: Final = 60
_HOUR_S: Final = 3600


@dataclass(frozen=True, slots=True)
class Output:
    """What a command prints: ``text`` for people, ``data`` for ``--json``."""

    text: str
    data: object


# ------------------------------------------------------------------ pure helpers


def find_matching_node(candidates: Iterable[FixedBytes32], pattern: str) -> FixedBytes32:
    """The one node whose hex id starts with ``pattern`` (case-insensitive).

    Raises:
        CliError: no node matches, or several do.
    """
    prefix = pattern.lower()
    found = sorted({c for c in candidates if c.hex().startswith(prefix)})
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError(f"no known node has an id starting with {pattern!r} (see `garage status`)")
    listed = ", ".join(n.short_hex() for n in found)
    raise CliError(
        f"node id prefix {pattern!r} is ambiguous: it matches {len(found)} nodes "
        f"({listed}); give more digits"
    )


def parse_capacity(text: str) -> int:
    """A capacity given with ``-c``: bytes, or a number with a unit (``1G``, ``500GiB``).

    Raises:
        CliError: not a size, or zero.
    """
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise CliError(f"invalid capacity {text!r}: {exc}") from None
    if size == 0:
        raise CliError("invalid capacity 0: give a positive capacity, or -g for a gateway node")
    return size


def parse_zone_redundancy(text: str, replication_factor: int) -> ZoneRedundancy:
    """``-r`` of ``layout config``: ``max`` (or ``none``), or a number of zones.

    Raises:
        CliError: not a number, or out of ``1..replication_factor``.
    """
    if text.lower() in ZONE_REDUNDANCY_MAX:
        return "maximum"
    if not text.isascii() or not text.isdigit():
        raise CliError(f"invalid zone redundancy {text!r}: expected 'max' or a number of zones")
    value = int(text)
    if not 1 <= value <= replication_factor:
        raise CliError(
            f"invalid zone redundancy {value}: it must be between 1 and the replication "
            f"factor ({replication_factor})"
        )
    return value


def stage_assign(
    history: LayoutHistory,
    nodes: Sequence[FixedBytes32],
    *,
    zone: str | None,
    capacity: int | None,
    gateway: bool,
    tags: Sequence[str],
    replace: Sequence[FixedBytes32] = (),
    now_ms: int,
) -> LayoutHistory:
    """Stages roles for ``nodes`` (and the removal of ``replace``), as ``layout assign``.

    A node that has a role (current or staged) keeps what is not given again; a new node
    needs a zone, and a capacity unless it is a gateway.

    Raises:
        CliError: a missing zone or capacity, ``-c`` with ``-g``, or a replaced node
            without a role.
    """
    if capacity is not None and gateway:
        raise CliError("-c and -g cannot go together: a node either stores data or is a gateway")
    if zone is not None and not zone.strip():
        raise CliError("a zone name cannot be empty")
    roles = history.current.roles.merge(history.staged.roles)
    for node in replace:
        entry = roles.get(node)
        if entry is None or entry.role is None:
            raise CliError(
                f"cannot replace node {node.short_hex()}: it has no role in the planned layout"
            )
        history = history.stage_removal(node, now_ms)
    for node in nodes:
        entry = roles.get(node)
        old = None if entry is None else entry.role
        if old is not None:
            role = NodeRole(
                zone if zone is not None else old.zone,
                capacity if capacity is not None else (None if gateway else old.capacity),
                tuple(tags) if tags else old.tags,
            )
        else:
            if zone is None:
                raise CliError(f"node {node.short_hex()} has no role yet: give its zone with -z")
            if capacity is None and not gateway:
                raise CliError(
                    f"node {node.short_hex()} has no role yet: give its capacity with -c, "
                    "or make it a gateway with -g"
                )
            role = NodeRole(zone, capacity, tuple(tags))
        history = history.stage_role(node, role, now_ms)
    return history


def _capacity(role: NodeRole) -> str:
    return "gateway" if role.capacity is None else format_bytes(role.capacity)


def _role_rows(version: LayoutVersion) -> list[list[str]]:
    rows = [["ID", "Tags", "Zone", "Capacity", "Usable capacity"]]
    for node, entry in version.roles.items():
        role = entry.role
        if role is None:
            continue
        usage = version.get_node_usage(node) * version.partition_size
        usable = "-" if role.capacity is None else format_bytes(usage)
        rows.append([node.short_hex(), ",".join(role.tags), role.zone, _capacity(role), usable])
    return rows


def _staged_changes(history: LayoutHistory) -> tuple[list[str], list[dict[str, object]]]:
    """The lines of the staged role changes, and their JSON."""
    current = history.current.roles
    rows = [["ID", "Tags", "Zone", "Capacity"]]
    data: list[dict[str, object]] = []
    for node, entry in history.staged.roles.items():
        if current.get(node) == entry:
            continue
        role = entry.role
        if role is None:
            rows.append([node.short_hex(), "REMOVED"])
            data.append({"id": node.hex(), "removed": True})
        else:
            rows.append([node.short_hex(), ",".join(role.tags), role.zone, _capacity(role)])
            data.append({"id": node.hex(), "removed": False, **_role_json(role)})
    lines = []
    if data:
        lines = ["==== STAGED ROLE CHANGES ====", format_table(rows)]
    params = history.staged.parameters.value
    if params != history.current.parameters:
        lines += ["", f"Zone redundancy: {params.zone_redundancy}"]
    return lines, data


def _role_json(role: NodeRole) -> dict[str, object]:
    return {"zone": role.zone, "capacity": role.capacity, "tags": list(role.tags)}


# ------------------------------------------------------------------ remote reads


async def _fetch(client: Client) -> tuple[list[KnownNode], LayoutHistory]:
    known = await client.call(GET_KNOWN_NODES, GetKnownNodes(), what="reading the cluster")
    history = await client.call(PULL_LAYOUT, PullLayout(), what="reading the layout")
    return list(known.nodes), history


async def _send(client: Client, history: LayoutHistory) -> None:
    await client.expect(AdvertiseLayout(history), Done, what="sending the layout")


# ------------------------------------------------------------------ status


async def status(client: Client) -> Output:
    """``garage status``: health, then every node with its role and state."""
    known, history = await _fetch(client)
    health = await client.expect(GetHealth(), HealthReport)
    current = history.current
    by_id = {k.node_id: k for k in known}
    healthy = [["ID", "Hostname", "Address", "Tags", "Zone", "Capacity", "DataAvail"]]
    nodes_json = []
    for k in sorted(known, key=lambda k: bytes(k.node_id)):
        role = current.get_node_role(k.node_id)
        st = k.status
        addr = _address(k, client)
        host = (st.hostname if st is not None else None) or "?"
        disk = None if st is None else st.data_disk
        entry: dict[str, object] = {
            "id": k.node_id.hex(),
            "hostname": host,
            "address": addr,
            "is_up": k.is_up,
            "last_seen_ms_ago": k.last_seen_ms_ago,
            "role": None if role is None else _role_json(role),
            "data_avail": None if disk is None else disk.avail,
            "data_total": None if disk is None else disk.total,
        }
        nodes_json.append(entry)
        if not k.is_up:
            continue
        if role is not None:
            avail = "N/A" if role.capacity is None else _pct(disk)
            healthy.append(
                [k.node_id.short_hex(), host, addr, ",".join(role.tags), role.zone,
                 _capacity(role), avail]
            )  # fmt: skip
        else:
            staged = history.staged.roles.get(k.node_id)
            note = "pending..." if staged is not None and staged.role else "NO ROLE ASSIGNED"
            healthy.append([k.node_id.short_hex(), host, addr, "", "", note])
    lines = [
        f"Cluster health: {health.status} ({health.storage_nodes_up}/{health.storage_nodes} "
        f"storage nodes up, {health.partitions_quorum}/{health.partitions} partitions with "
        f"a write quorum, {health.partitions_all_ok} fully replicated)",
        f"Layout version: {current.version}",
        "",
        "==== HEALTHY NODES ====",
        format_table(healthy),
    ]
    failed = [["ID", "Hostname", "Address", "Tags", "Zone", "Capacity", "Last seen"]]
    for node in current.storage_nodes:
        seen_node = by_id.get(node)
        if seen_node is not None and seen_node.is_up:
            continue
        node_role = current.get_node_role(node)
        assert node_role is not None  # a storage node of this version
        failed.append(_failed_row(node, node_role, seen_node))
    if len(failed) > 1:
        lines += ["", "==== FAILED NODES ====", format_table(failed)]
    staged_lines, _ = _staged_changes(history)
    if staged_lines:
        lines += ["", *staged_lines, "", "Use `garage layout show` to review the proposed layout."]
    data = {
        "health": {
            "status": health.status,
            "storage_nodes": health.storage_nodes,
            "storage_nodes_up": health.storage_nodes_up,
            "partitions": health.partitions,
            "partitions_quorum": health.partitions_quorum,
            "partitions_all_ok": health.partitions_all_ok,
        },
        "layout_version": current.version,
        "nodes": nodes_json,
    }
    return Output("\n".join(lines), data)


def _address(k: KnownNode, client: Client) -> str:
    """Where a node is reached: its connection, what it announces, or (for the node we
    talk to, which does not list itself with an address) where we reached it."""
    if k.host is not None:
        return f"[{k.host}]:{k.port}" if ":" in k.host else f"{k.host}:{k.port}"
    if k.status is not None and k.status.public_addr:
        return k.status.public_addr
    t = client.target
    if k.node_id == t.node_id:
        return f"[{t.host}]:{t.port}" if ":" in t.host else f"{t.host}:{t.port}"
    return ""


def _failed_row(node: FixedBytes32, role: NodeRole, k: KnownNode | None) -> list[str]:
    host = "??" if k is None or k.status is None else (k.status.hostname or "?")
    addr = "??" if k is None or k.host is None else f"{k.host}:{k.port}"
    seen = _ago(None if k is None else k.last_seen_ms_ago)
    return [node.short_hex(), host, addr, ",".join(role.tags), role.zone, _capacity(role), seen]


def _pct(disk: DiskSpace | None) -> str:
    if disk is None or not disk.total:
        return "?"
    permille = disk.avail * 1000 // disk.total
    return f"{format_bytes(disk.avail)} ({permille // 10}.{permille % 10}%)"


def _ago(ms: int | None) -> str:
    if ms is None:
        return "never seen"
    seconds = ms // 1000
    if seconds < 2 * _MINUTE_S:
        return f"{seconds} seconds ago"
    if seconds < 2 * _HOUR_S:
        return f"{seconds // _MINUTE_S} minutes ago"
    return f"{seconds // _HOUR_S} hours ago"


async def node_connect(client: Client, node: str) -> Output:
    """``garage node connect <id>@<host>:<port>``."""
    done = await client.expect(ConnectNode(node), Done, what="connecting")
    return Output(done.message, {"message": done.message})


# ------------------------------------------------------------------ layout


async def layout_show(client: Client) -> Output:
    """``garage layout show``: the current roles, staged changes, and what applying them
    would give."""
    _, history = await _fetch(client)
    current = history.current
    rows = _role_rows(current)
    lines = ["==== CURRENT CLUSTER LAYOUT ===="]
    if len(rows) > 1:
        lines += [format_table(rows), "", f"Zone redundancy: {current.parameters.zone_redundancy}"]
    else:
        lines += ["No nodes currently have a role in the cluster.", "See `garage status`."]
    lines += ["", f"Current cluster layout version: {current.version}"]
    staged, staged_json = _staged_changes(history)
    data: dict[str, object] = {
        "version": current.version,
        "replication_factor": current.replication_factor,
        "zone_redundancy": current.parameters.zone_redundancy,
        "partition_size": current.partition_size,
        "roles": [
            {"id": n.hex(), **_role_json(e.role), "partitions": current.get_node_usage(n)}
            for n, e in current.roles.items()
            if e.role is not None
        ],
        "staged_role_changes": staged_json,
        "staged_zone_redundancy": history.staged.parameters.value.zone_redundancy,
    }
    if history.has_staged_changes:
        lines += ["", *staged]
        nxt = current.version + 1
        try:
            new, summary = await anyio.to_thread.run_sync(history.calculate_next_version)
        except InvalidLayoutError as exc:
            lines += [
                "",
                f"Error while trying to compute the assignment: {exc}",
                "This new layout cannot yet be applied.",
                "You can also revert all proposed changes with: garage layout revert --yes",
            ]
            data["next"] = {"version": nxt, "error": str(exc)}
        else:
            lines += [
                "",
                "==== NEW CLUSTER LAYOUT AFTER APPLYING CHANGES ====",
                format_table(_role_rows(new)),
                "",
                format_summary(summary).rstrip(),
                "",
                "To enact the staged role changes, type:",
                "",
                f"    garage layout apply --version {nxt}",
                "",
                "You can also revert all proposed changes with: garage layout revert --yes",
            ]
            data["next"] = {
                "version": nxt,
                "partition_size": summary.partition_size,
                "usable_capacity": summary.usable_capacity,
                "moved_replicas": summary.moved_replicas,
                "roles": [
                    {"id": n.id.hex(), "zone": n.zone, "capacity": n.capacity,
                     "partitions": n.partitions, "new_partitions": n.new_partitions}
                    for n in summary.nodes
                ],
            }  # fmt: skip
    return Output("\n".join(lines), data)


async def layout_assign(
    client: Client,
    patterns: Sequence[str],
    *,
    zone: str | None,
    capacity: str | None,
    gateway: bool,
    tags: Sequence[str],
    replace: Sequence[str],
) -> Output:
    """``garage layout assign``: stages roles (see :func:`stage_assign`)."""
    cap = None if capacity is None else parse_capacity(capacity)
    known, history = await _fetch(client)
    in_layout = history.all_nodes()
    staged = [n for n, _ in history.staged.roles.items()]
    candidates = [k.node_id for k in known] + [*in_layout, *staged]
    nodes = [find_matching_node(candidates, p) for p in patterns]
    replaced = [find_matching_node([*in_layout, *staged], p) for p in replace]
    history = stage_assign(
        history,
        nodes,
        zone=zone,
        capacity=cap,
        gateway=gateway,
        tags=tags,
        replace=replaced,
        now_ms=now_msec(),
    )
    await _send(client, history)
    text = (
        "Role changes are staged but not yet committed.\n"
        "Use `garage layout show` to view staged role changes,\n"
        "and `garage layout apply` to enact staged changes."
    )
    return Output(
        text, {"staged": [n.hex() for n in nodes], "removed": [n.hex() for n in replaced]}
    )


async def layout_remove(client: Client, pattern: str) -> Output:
    """``garage layout remove``: stages the removal of a node's role."""
    _, history = await _fetch(client)
    roles = history.current.roles.merge(history.staged.roles)
    with_role = [n for n, e in roles.items() if e.role is not None]
    node = find_matching_node(with_role, pattern)
    history = history.stage_removal(node, now_msec())
    await _send(client, history)
    text = (
        f"Role removal of node {node.short_hex()} is staged but not yet committed.\n"
        "Use `garage layout show` to view staged role changes,\n"
        "and `garage layout apply` to enact staged changes."
    )
    return Output(text, {"removed": node.hex()})


async def layout_config(client: Client, redundancy: str | None) -> Output:
    """``garage layout config -r``: stages the zone redundancy."""
    if redundancy is None:
        raise CliError("nothing to do: give the zone redundancy with -r (max, or a number)")
    _, history = await _fetch(client)
    value = parse_zone_redundancy(redundancy, history.current.replication_factor)
    history = history.stage_parameters(LayoutParameters(value), now_msec())
    await _send(client, history)
    return Output(
        f"The zone redundancy parameter has been set to '{value}' (staged).",
        {"zone_redundancy": value},
    )


async def layout_apply(client: Client, version: int) -> Output:
    """``garage layout apply --version N``: computes and applies the staged layout."""
    _, history = await _fetch(client)
    expected = history.current.version + 1
    if version != expected:
        raise CliError(str(LayoutVersionError(expected, version)))
    if not history.has_staged_changes:
        raise CliError("there are no staged changes to apply (see `garage layout show`)")

    def apply() -> tuple[LayoutHistory, str, int]:
        new, summary = history.apply_staged_changes(version, now_msec())
        return new, format_summary(summary), summary.partition_size

    try:
        new, text, partition_size = await anyio.to_thread.run_sync(apply)
    except (InvalidLayoutError, LayoutVersionError) as exc:
        raise CliError(f"cannot apply the staged layout: {exc}") from None
    await _send(client, new)
    text = (
        text.rstrip()
        + "\n\nNew cluster layout with updated role assignment has been applied in cluster.\n"
        "Data will now be moved around between nodes accordingly."
    )
    return Output(text, {"version": version, "partition_size": partition_size})


async def layout_revert(client: Client, *, yes: bool) -> Output:
    """``garage layout revert --yes``: drops every staged change."""
    if not yes:
        raise CliError("add --yes to really drop every staged layout change")
    _, history = await _fetch(client)
    await _send(client, history.revert_staged_changes(now_msec()))
    return Output(
        "All proposed role changes in cluster layout have been canceled.",
        {"version": history.current.version},
    )


async def layout_skip_dead_nodes(
    client: Client, version: int, *, allow_missing_data: bool
) -> Output:
    """``garage layout skip-dead-nodes --version N``: lets a layout transition finish
    without the nodes that are down, by raising their ``ack`` tracker (and, with
    ``--allow-missing-data``, every node's ``sync`` tracker) to ``N``.

    Raises:
        CliError: a single live version, a version out of range, or nothing to do.
    """
    known, history = await _fetch(client)
    if len(history.versions) == 1:
        raise CliError("there is only one live layout version: no transition to finish")
    first, current = history.min_stored + 1, history.current.version
    if not first <= version <= current:
        allowed = " ".join(str(v) for v in range(first, current + 1))
        raise CliError(f"invalid version {version}: use one of {allowed}")
    up = {k.node_id for k in known if k.is_up}
    trackers = history.update_trackers
    ack, sync = trackers.ack_map, trackers.sync_map
    done = []
    for node in history.all_nodes():
        if allow_missing_data or node not in up:
            raised = ack.set_max(node, version)
            if raised != ack:
                done.append(f"Increased the ACK tracker for node {node.short_hex()}")
            ack = raised
        if allow_missing_data:
            raised = sync.set_max(node, version)
            if raised != sync:
                done.append(f"Increased the SYNC tracker for node {node.short_hex()}")
            sync = raised
    if not done:
        hint = "" if allow_missing_data else ": try --allow-missing-data"
        raise CliError(f"nothing was done{hint}")
    new = UpdateTrackers(ack, sync, trackers.sync_ack_map)
    await _send(client, dataclasses.replace(history, update_trackers=new))
    return Output("\n".join(done), {"version": version, "changes": done})


async def layout_history(client: Client) -> Output:
    """``garage layout history``: live and retired versions, and the update trackers."""
    _, history = await _fetch(client)
    current, min_stored = history.current.version, history.min_stored
    rows = [["Version", "Status", "Storage nodes", "Gateway nodes"]]
    versions = []
    for v in (*reversed(history.versions), *reversed(history.old_versions)):
        state = (
            "current" if v.version == current else "draining" if v.version >= min_stored else
            "historical"
        )  # fmt: skip
        gateways = len(v.all_nodes) - len(v.storage_nodes)
        rows.append([f"#{v.version}", state, str(len(v.storage_nodes)), str(gateways)])
        versions.append(
            {"version": v.version, "status": state, "storage_nodes": len(v.storage_nodes),
             "gateway_nodes": gateways}
        )  # fmt: skip
    lines = ["==== LAYOUT HISTORY ====", format_table(rows), ""]
    trackers = history.update_trackers
    tracker_rows = [["Node", "Ack", "Sync", "Sync_ack"]]
    tracker_json = []
    for node in history.all_nodes():
        ack = trackers.ack_map.get(node, min_stored)
        sync = trackers.sync_map.get(node, min_stored)
        sync_ack = trackers.sync_ack_map.get(node, min_stored)
        tracker_rows.append([short(node.hex()), f"#{ack}", f"#{sync}", f"#{sync_ack}"])
        tracker_json.append({"node": node.hex(), "ack": ack, "sync": sync, "sync_ack": sync_ack})
    if len(history.versions) > 1:
        lines += [
            "==== UPDATE TRACKERS ====",
            "Several layout versions are live in the cluster, and data is being migrated.",
            "",
            format_table(tracker_rows),
            "",
            "If some nodes are not catching up to the latest layout version in the update",
            "trackers, they may be offline or unable to complete a sync successfully.",
        ]
    else:
        lines += [
            "Your cluster is currently in a stable state with a single live layout version.",
            "No metadata migration is in progress. Note that the migration of data blocks is",
            "not tracked, so you might want to keep old nodes online until their data",
            "directories become empty.",
        ]
    data = {"current": current, "versions": versions, "trackers": tracker_json}
    return Output("\n".join(lines), data)
