"""The nemeses fire and have their effect; the harness's pure parts hold their laws.

The slow tests run ``python -m faults --probe all`` once (a real 4-node cluster inside the
runner's own network and mount namespaces, see faults/_probes.py) and assert on the facts
each probe recorded: a partition makes a write through the cut-off node fail while the
majority writes, a paused node stops answering, a skewed clock shows in the node's own
timestamps, a full disk makes PutObject fail cleanly while old objects stay readable, a
corrupted block is served right and quarantined, a killed node refuses connections and
comes back with its data, and layout changes apply with consecutive versions.

The fast tests cover the pure cores: partition shapes, the nftables script, body
self-checksums, outcome classification, the clock-offset syntax and the down-node budget.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from faults._body import decode_chunks, encode_body
from faults._clockskew import parse_offset_ns
from faults._grudge import GRUDGES, grudge, nft_ruleset, visible
from faults._s3 import Reply, classify
from faults.harness import SKIP_EXIT
from faults.history import FAIL, INFO, OK
from faults.nemesis import FaultBudget, corrupt_block
from hypothesis import assume, given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
#: A whole probe session: cluster start (slow on a busy 2-core machine) and seven probes.
PROBE_TIMEOUT_S = 900


# ---------------------------------------------------------------- probes (real cluster)


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("probes")
    out = work / "facts.json"
    argv = ["--probe", "all", "--json", str(out), "--workdir", str(work)]
    proc = subprocess.run(
        [sys.executable, "-m", "faults", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
    )
    if proc.returncode == SKIP_EXIT:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    found: dict[str, Any] = json.loads(out.read_text())
    assert "harness" not in found, found["harness"]
    return found


def _probe(facts: dict[str, Any], name: str) -> dict[str, Any]:
    got: dict[str, Any] = facts[name]
    assert "error" not in got, got.get("trace")
    return got


def _fired(got: dict[str, Any], nemesis: str) -> list[dict[str, Any]]:
    events = [e for e in got["events"] if e["nemesis"] == nemesis]
    assert events, f"the {nemesis} nemesis recorded no event"
    return events


@pytest.mark.slow
@pytest.mark.timeout(PROBE_TIMEOUT_S + 60)
def test_clock_offset_shows_in_the_node_time(facts: dict[str, Any]) -> None:
    got = _probe(facts, "clock")
    assert _fired(got, "clock")[0]["offset_s"] == 200
    # Last-Modified has 1 s precision and the PUT takes time: generous bounds.
    assert 190 <= got["skewed_s"] <= 215
    assert -10 <= got["normal_s"] <= 15
    assert -10 <= got["reset_s"] <= 15


@pytest.mark.slow
@pytest.mark.timeout(PROBE_TIMEOUT_S + 60)
def test_a_paused_node_stops_answering(facts: dict[str, Any]) -> None:
    got = _probe(facts, "pause")
    _fired(got, "pause")
    assert got["state"] == "T"  # stopped
    assert got["paused"]["status"] is None
    assert got["paused"]["error"] == "client timeout"
    assert got["after"]["outcome"] == OK


@pytest.mark.slow
@pytest.mark.timeout(PROBE_TIMEOUT_S + 60)
def test_a_killed_node_refuses_then_comes_back_with_its_data(facts: dict[str, Any]) -> None:
    got = _probe(facts, "kill")
    _fired(got, "kill")
    assert got["put"] == OK
    assert got["dead"]["outcome"] == FAIL
    assert got["dead"]["sent"] is False  # connection refused: nothing was sent
    assert got["alive"]["values"] == [got["written"]]
    assert got["after"]["values"] == [got["written"]]


@pytest.mark.slow
@pytest.mark.timeout(PROBE_TIMEOUT_S + 60)
def test_a_partition_cuts_the_cluster_not_the_clients(facts: dict[str, Any]) -> None:
    got = _probe(facts, "partition")
    assert _fired(got, "partition")[0]["kind"] == "isolate"
    assert got["cut_link"] == "timeout"  # node-to-node packets are dropped
    assert got["client_link"] == "connected"  # 127.0.0.1 -> the node is untouched
    assert got["put_isolated"] in (FAIL, INFO)  # no write quorum on the lone side
    assert got["put_isolated_status"] != 200
    assert got["put_majority"] == OK
    assert got["dropped"] > 0  # the nodes tried to talk across the partition
    assert got["fired"] == 1
    assert got["put_after_heal"]


@pytest.mark.slow
@pytest.mark.timeout(PROBE_TIMEOUT_S + 60)
def test_a_corrupted_block_is_served_right_and_quarantined(facts: dict[str, Any]) -> None:
    got = _probe(facts, "corruption")
    assert got["put"] == OK
    assert got["get"]["outcome"] == OK
    assert got["get"]["values"] == [got["written"]]
    assert got["get"]["corrupt"] is False
    assert got["quarantined"]


@pytest.mark.slow
@pytest.mark.timeout(PROBE_TIMEOUT_S + 60)
def test_a_full_disk_fails_writes_cleanly_and_keeps_old_objects(facts: dict[str, Any]) -> None:
    got = _probe(facts, "disk-full")
    fill = _fired(got, "disk-full")[0]
    assert all(size > 0 for size in fill["ballast_bytes"].values())
    assert got["old_put"] == OK
    assert got["full_put"] != OK
    assert got["full_status"] is not None  # an error answer, not a hang
    assert got["full_status"] >= 500
    assert got["read_old"]["values"] == [got["old"]]
    assert got["read_old"]["corrupt"] is False
    assert len(got["alive_when_full"]) == 4
    assert got["put_after_free"]


@pytest.mark.slow
@pytest.mark.timeout(PROBE_TIMEOUT_S + 60)
def test_layout_changes_apply_with_consecutive_versions(facts: dict[str, Any]) -> None:
    got = _probe(facts, "layout")
    applied = [c["version"] for c in got["changes"] if "version" in c]
    assert applied, got["changes"]
    versions = got["versions"]
    assert versions == sorted(versions)
    assert applied == list(range(versions[0] + 1, versions[0] + 1 + len(applied)))
    assert set(got["seen"].values()) == {versions[-1]}


# ---------------------------------------------------------------- pure parts

NODES = st.lists(st.integers(1, 9), min_size=3, max_size=7, unique=True)


@given(NODES, st.sampled_from(GRUDGES), st.randoms(use_true_random=False))
def test_grudges_cut_only_cluster_links(nodes: list[int], kind: str, rng: random.Random) -> None:
    g = grudge(kind, nodes, rng)
    assert g
    assert all(a in nodes and b in nodes and a != b for a, b in g)


@given(NODES, st.randoms(use_true_random=False))
def test_majorities_ring_gives_each_node_its_own_majority(
    nodes: list[int], rng: random.Random
) -> None:
    g = grudge("ring", nodes, rng)
    majority = len(nodes) // 2 + 1
    seen = [frozenset(visible(g, nodes, n)) for n in nodes]
    assert all(len(s) == majority for s in seen)
    assert len(set(seen)) == len(nodes)


@given(NODES, st.randoms(use_true_random=False))
def test_isolate_halves_bridge_and_oneway_shapes(nodes: list[int], rng: random.Random) -> None:
    n = len(nodes)
    iso = grudge("isolate", nodes, rng)
    (victim,) = set.intersection(*({a, b} for a, b in iso))
    assert len(iso) == 2 * (n - 1)
    halves = grudge("halves", nodes, rng)
    assert len(halves) == 2 * (n // 2) * (n - n // 2)
    oneway = grudge("oneway", nodes, rng)
    (dst,) = {b for _, b in oneway}
    assert visible(oneway, nodes, dst) == {dst}
    assert all(visible(oneway, nodes, x) == set(nodes) for x in nodes if x != dst)
    bridge = grudge("bridge", nodes, rng)
    hubs = [x for x in nodes if visible(bridge, nodes, x) == set(nodes)]
    assert len(hubs) == 1
    assert victim in nodes


def test_nft_ruleset_replaces_the_whole_table() -> None:
    script = nft_ruleset(frozenset({(1, 2), (3, 1)}), lambda i: f"127.0.0.{10 + i}")
    lines = script.splitlines()
    assert lines[:2] == ["table inet gtest", "delete table inet gtest"]
    assert "    ip saddr 127.0.0.11 ip daddr 127.0.0.12 counter drop" in lines
    assert "    ip saddr 127.0.0.13 ip daddr 127.0.0.11 counter drop" in lines
    assert sum("drop" in line for line in lines) == 2


@given(
    st.text(st.sampled_from("0123456789-abp."), min_size=1, max_size=20),
    st.integers(0, 5000),
)
def test_bodies_decode_to_their_value(value_id: str, size: int) -> None:
    body = encode_body(value_id, size)
    assert len(body) >= size
    assert decode_chunks(body).values == (value_id,)
    assert not decode_chunks(body).corrupt


@given(st.integers(0, 3000), st.data())
def test_any_damage_to_a_chunk_is_detected(size: int, data: st.DataObject) -> None:
    first = encode_body("7-42", size)
    body = bytearray(first + encode_body("7-43", 100))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(1, len(body) - 1))
        assume(cut != len(first))  # a whole first chunk is a valid (shorter) body
        damaged = bytes(body[:cut])
    else:
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] ^= data.draw(st.integers(1, 255))
        damaged = bytes(body)
    assert decode_chunks(damaged).corrupt


def test_outcomes_follow_the_classification_table() -> None:
    assert classify(Reply(200), write=True) == OK
    assert classify(Reply(404), write=False) == OK  # an ok read of "absent"
    assert classify(Reply(404), write=True) == FAIL
    assert classify(Reply(403), write=True) == FAIL
    assert classify(Reply(503), write=True) == INFO
    assert classify(Reply(503), write=False) == FAIL
    assert classify(Reply(None, error="timeout"), write=True) == INFO
    assert classify(Reply(None, error="timeout"), write=False) == FAIL
    assert classify(Reply(None, error="refused", sent=False), write=True) == FAIL


@pytest.mark.parametrize(
    ("text", "ns"),
    [("+0s", 0), ("+262.144s", 262_144_000_000), ("-3s", -3_000_000_000), ("1.5", 1_500_000_000),
     ("@2020-01-01", 0), ("", 0)],
)  # fmt: skip
def test_clock_offsets_use_libfaketime_syntax(text: str, ns: int) -> None:
    assert parse_offset_ns(text) == ns


def test_fault_budget_keeps_a_minority_down() -> None:
    budget, rng = FaultBudget(limit=1), random.Random(3)
    first = budget.take([1, 2, 3], rng)
    assert first in (1, 2, 3)
    assert budget.take([1, 2, 3], rng) is None
    assert first is not None
    budget.release(first)
    assert budget.take([first], rng) == first


@pytest.mark.parametrize("kind", ["bitflip", "truncate", "zero", "swap", "delete", "rename"])
def test_block_corruptions_change_the_block_file(tmp_path: Path, kind: str) -> None:
    block = tmp_path / ("ab" * 32)
    other = tmp_path / ("cd" * 32)
    block.write_bytes(encode_body("1-1", 4096))
    other.write_bytes(encode_body("1-2", 4096))
    before = block.read_bytes()
    corrupt_block(block, kind, random.Random(5), other=other)
    assert not block.exists() or block.read_bytes() != before
