"""Roles, parameters and staged changes: validation, apply/revert rules, CRDT laws."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_rpc.layout import (
    MAX_NODE_NUMBER,
    NB_PARTITIONS,
    InvalidLayoutError,
    LayoutError,
    LayoutHistory,
    LayoutParameters,
    LayoutStaging,
    LayoutVersionError,
    NodeRole,
    NodeRoleV,
    partition_first_hash,
    partition_of,
)
from garage_util.crdt import Lww, LwwMap
from garage_util.data import FixedBytes32, Uuid, blake2sum
from garage_util.encode import pack, unpack
from garage_util.errors import DecodeError, GarageError
from garage_util.testing import check_crdt_laws, timestamps

GB = 10**9


def node_id(i: int) -> Uuid:
    return blake2sum(f"node {i}".encode())


def history_with(
    roles: dict[int, NodeRole], *, rf: int = 3, parameters: LayoutParameters | None = None
) -> LayoutHistory:
    h = LayoutHistory.new(rf)
    for i, role in roles.items():
        h = h.stage_role(node_id(i), role, 1_000)
    if parameters is not None:
        h = h.stage_parameters(parameters, 1_000)
    return h


def three_zones(n: int = 3, cap: int = GB) -> dict[int, NodeRole]:
    return {i: NodeRole(f"dc{i % 3}", cap) for i in range(n)}


# ---------------------------------------------------------------- values


def test_partitions_are_the_first_byte_of_the_hash() -> None:
    h = FixedBytes32(bytes([0xAB]) + bytes(31))
    assert partition_of(h) == 0xAB
    assert partition_first_hash(0xAB) == h
    assert partition_of(partition_first_hash(NB_PARTITIONS - 1)) == NB_PARTITIONS - 1
    with pytest.raises(ValueError, match="partition must be in"):
        partition_first_hash(NB_PARTITIONS)
    with pytest.raises(ValueError, match="at least 2 bytes"):
        partition_of(b"x")


def test_node_roles_are_validated() -> None:
    assert NodeRole("dc1", None).is_gateway
    assert not NodeRole("dc1", 0).is_gateway
    with pytest.raises(ValueError, match="capacity must be None"):
        NodeRole("dc1", -1)
    with pytest.raises(ValueError, match="capacity must be None"):
        NodeRole("dc1", True)


@pytest.mark.parametrize("value", [0, -2, True, "max", "Maximum"])
def test_zone_redundancy_must_be_maximum_or_a_positive_int(value: object) -> None:
    with pytest.raises(ValueError, match="zone_redundancy must be 'maximum' or an integer"):
        LayoutParameters(value)  # type: ignore[arg-type]  # invalid on purpose


@pytest.mark.parametrize("value", ["maximum", 1, 3])
def test_parameters_round_trip(value: int | str) -> None:
    params = LayoutParameters(value)  # type: ignore[arg-type]  # str is the literal "maximum"
    assert params.effective_zone_redundancy(2, 3) == (2 if value == "maximum" else value)
    assert unpack(LayoutParameters, pack(params)) == params  # last: mypy types unpack as Never


@pytest.mark.parametrize(
    "wire", [{"zone_redundancy": "max"}, {"zone_redundancy": 1.5}, {"other": 1}, [1]]
)
def test_parameters_decoding_refuses_bad_values(wire: object) -> None:
    import msgpack

    with pytest.raises(DecodeError, match="LayoutParameters"):
        unpack(LayoutParameters, msgpack.packb(wire))


# ---------------------------------------------------------------- staging


def test_staging_and_applying_roles() -> None:
    h = history_with(three_zones())
    assert h.has_staged_changes
    assert h.current.version == 0
    assert h.current.nodes_of(node_id(0)) == ()  # no layout yet: nowhere to write
    h1, summary = h.apply_staged_changes(1, 2_000)
    assert h1.current.version == 1
    assert summary.version == 1
    assert not h1.has_staged_changes
    assert len(h1.staged.roles) == 0
    assert h1.current.get_node_role(node_id(1)) == NodeRole("dc1", GB)
    assert len(h1.current.nodes_of(node_id(0))) == 3
    # the empty version 0 is pruned as soon as version 1 is valid
    assert [v.version for v in h1.versions] == [1]


def test_apply_needs_the_next_version_number() -> None:
    h = history_with(three_zones())
    for wrong in (0, 2, 7):
        with pytest.raises(LayoutVersionError, match=f"invalid new layout version {wrong}") as e:
            h.apply_staged_changes(wrong, 2_000)
        assert (e.value.expected, e.value.given) == (1, wrong)
        assert "must be 1" in str(e.value)
    assert isinstance(e.value, LayoutError)
    assert isinstance(e.value, GarageError)


@pytest.mark.parametrize(
    ("roles", "rf", "parameters", "message"),
    [
        (three_zones(2), 3, None, r"number of nodes with a positive capacity \(2\) is smaller"),
        (
            {0: NodeRole("a", GB), 1: NodeRole("a", GB), 2: NodeRole("b", GB)},
            3,
            LayoutParameters(3),
            r"number of zones with storage nodes \(2\) is smaller than the zone redundancy \(3\)",
        ),
        (
            three_zones(4),
            2,
            LayoutParameters(3),
            r"zone redundancy \(3\) is larger than the replication factor \(2\)",
        ),
        ({**three_zones(3), 3: NodeRole("dc0", 0)}, 3, None, "have capacity 0"),
        (three_zones(3, cap=100), 3, None, "storage capacity of the cluster is too small"),
        (
            # gateways store nothing: they do not count as storage nodes
            {0: NodeRole("a", GB), 1: NodeRole("b", None), 2: NodeRole("c", None)},
            2,
            None,
            r"positive capacity \(1\) is smaller than the replication factor \(2\)",
        ),
    ],
)
def test_apply_refuses_invalid_staged_layouts(
    roles: dict[int, NodeRole], rf: int, parameters: LayoutParameters | None, message: str
) -> None:
    h = history_with(roles, rf=rf, parameters=parameters)
    with pytest.raises(InvalidLayoutError, match=message):
        h.apply_staged_changes(1, 2_000)
    with pytest.raises(InvalidLayoutError, match=message):
        h.calculate_next_version()


def test_more_than_256_storage_nodes_are_refused() -> None:
    roles = {i: NodeRole(f"dc{i % 3}", GB) for i in range(MAX_NODE_NUMBER + 1)}
    with pytest.raises(InvalidLayoutError, match="more than the maximum of 256"):
        history_with(roles).apply_staged_changes(1, 2_000)


def test_revert_drops_staged_changes() -> None:
    h1, _ = history_with(three_zones()).apply_staged_changes(1, 2_000)
    staged = h1.stage_role(node_id(9), NodeRole("dc9", GB), 3_000)
    staged = staged.stage_parameters(LayoutParameters(2), 3_000)
    assert staged.has_staged_changes
    reverted = staged.revert_staged_changes(4_000)
    assert not reverted.has_staged_changes
    assert len(reverted.staged.roles) == 0
    assert reverted.staged.parameters.value == h1.current.parameters
    assert reverted.staging.ts > staged.staging.ts
    assert reverted.versions == h1.versions


def test_staged_parameters_are_applied_and_kept() -> None:
    h = history_with(three_zones(4), parameters=LayoutParameters(2))
    h1, summary = h.apply_staged_changes(1, 2_000)
    assert h1.current.parameters == LayoutParameters(2)
    assert summary.zone_redundancy == 2
    assert h1.staged.parameters.value == LayoutParameters(2)
    assert not h1.has_staged_changes


def test_removing_a_node() -> None:
    h1, _ = history_with(three_zones(4)).apply_staged_changes(1, 2_000)
    h = h1.stage_removal(node_id(3), 3_000)
    assert h.staged.roles.get(node_id(3)) == NodeRoleV(None)
    h2, _ = h.apply_staged_changes(2, 4_000)
    assert node_id(3) not in h2.current.all_nodes
    assert node_id(3) not in h2.current.roles  # the tombstone is not kept in the version
    assert all(node_id(3) not in h2.current.partition_nodes(p) for p in range(NB_PARTITIONS))
    # removing a node that has no role changes nothing
    h3, summary = h2.stage_removal(node_id(42), 5_000).apply_staged_changes(3, 6_000)
    assert summary.moved_replicas == 0
    assert h3.current.all_nodes == h2.current.all_nodes


def test_gateways_have_a_role_but_no_partition() -> None:
    roles = {**three_zones(), 7: NodeRole("dc7", None, ("api",))}
    h1, summary = history_with(roles).apply_staged_changes(1, 2_000)
    v = h1.current
    assert node_id(7) in v.all_nodes
    assert node_id(7) not in v.storage_nodes
    assert v.all_nodes[-1] == node_id(7)  # storage nodes first
    assert v.get_node_usage(node_id(7)) == 0
    assert v.get_node_capacity(node_id(7)) is None
    assert v.get_node_zone(node_id(7)) == "dc7"
    assert node_id(7) not in {n.id for n in summary.nodes}
    # a gateway alone in its zone does not raise the "maximum" zone redundancy
    assert v.effective_zone_redundancy() == 3


def test_a_staged_role_overrides_the_current_one_despite_a_lagging_clock() -> None:
    h1, _ = history_with(three_zones()).apply_staged_changes(1, 50_000)
    # A node whose clock lags far behind re-assigns node 0 to a bigger capacity.
    h = h1.stage_role(node_id(0), NodeRole("dc0", 2 * GB), 10)
    h2, _ = h.apply_staged_changes(2, 20)
    assert h2.current.get_node_capacity(node_id(0)) == 2 * GB


def test_staging_from_two_nodes_merges() -> None:
    h1, _ = history_with(three_zones()).apply_staged_changes(1, 2_000)
    a = h1.stage_role(node_id(10), NodeRole("dc0", GB), 3_000)
    b = h1.stage_role(node_id(11), NodeRole("dc1", GB), 3_001)
    merged, changed = a.merge(b)
    assert changed
    assert {node_id(10), node_id(11)} <= set(merged.staged.roles.keys())
    assert b.merge(a)[0] == merged
    # an apply replaces the staging register: concurrent edits made before are dropped
    applied, _ = a.apply_staged_changes(2, 4_000)
    after, _ = applied.merge(b)
    assert len(after.staged.roles) == 0


# ---------------------------------------------------------------- CRDT laws

ids = st.sampled_from([node_id(i) for i in range(4)])
roles = st.one_of(
    st.none(),
    st.builds(
        NodeRole,
        st.sampled_from(["dc1", "dc2"]),
        st.sampled_from([None, 1, 2]),
        st.sampled_from([(), ("a",)]),
    ),
).map(NodeRoleV)
params = st.sampled_from([LayoutParameters(), *map(LayoutParameters, range(1, 4))])


@st.composite
def stagings(draw: st.DrawFn) -> LayoutStaging:
    entries = draw(st.dictionaries(ids, st.tuples(timestamps(), roles), max_size=4))
    return LayoutStaging(Lww(draw(timestamps()), draw(params)), LwwMap.from_items(entries))


@given(stagings(), stagings(), stagings())
def test_staging_merge_is_a_crdt(a: LayoutStaging, b: LayoutStaging, c: LayoutStaging) -> None:
    check_crdt_laws(a, b, c)


@given(stagings(), stagings(), stagings(), timestamps(), timestamps(), timestamps())
def test_staging_registers_merge_is_a_crdt(
    a: LayoutStaging, b: LayoutStaging, c: LayoutStaging, ta: int, tb: int, tc: int
) -> None:
    check_crdt_laws(Lww(ta, a), Lww(tb, b), Lww(tc, c))


@given(stagings())
def test_staging_round_trips(staging: LayoutStaging) -> None:
    assert unpack(LayoutStaging, pack(staging)) == staging


def test_staging_mutators_are_deltas() -> None:
    s = LayoutStaging.empty(LayoutParameters())
    s1 = s.with_role(node_id(1), NodeRole("dc1", GB), 100)
    s2 = s1.with_role(node_id(1), None, 50)  # lagging clock: still newer than the entry
    assert s2.roles.get(node_id(1)) == NodeRoleV(None)
    assert (s2.roles.get_timestamp(node_id(1)) or 0) > (s1.roles.get_timestamp(node_id(1)) or 0)
    s3 = s2.with_parameters(LayoutParameters(1), 10)
    assert s3.parameters.value == LayoutParameters(1)
    assert s3.parameters.ts > s2.parameters.ts
