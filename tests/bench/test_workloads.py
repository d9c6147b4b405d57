"""bench_s3's workloads against one real node, at tiny sizes (slow: a node process).

The full benchmark runs them at sizes that take minutes; this runs each once at sizes that
take seconds, so that a change to the node or to the workloads that breaks a benchmark
shows up in the tests rather than half an hour into ``nox -s bench``. What is checked is
what the workloads claim to have done: every status, the number of answers and keys, each
body's size, the multipart object's size and ETag; plus a short profile of the node under
py-spy. No speed is asserted.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
from bench._load import fire
from bench._servers import Server, call, start_garage, stop
from bench._workloads import MIB, OPS, SMALL, big, listing, rss, small_ops
from bench.bench_s3 import QUICK, Measured, _profile

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

#: S3's smallest part, but the last: two parts, the last one short.
PART = 5 * MIB
BIG = PART + MIB + 4321


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_garage("trio", tmp_path_factory.mktemp("bench-node"))
    try:
        yield server
    finally:
        stop(server)


def test_small_objects_are_put_got_headed_and_deleted(node: Server) -> None:
    counts = {1: 3, 16: 20}
    result = small_ops(node, counts, tag="smoke")
    assert set(result.loads) == {(op, c) for op in OPS for c in counts}
    for (op, concurrency), load in result.loads.items():
        assert load.ops == counts[concurrency], (op, concurrency)
        assert load.server_cpu_s >= 0
    assert {a.status for a in result.loads["PUT", 16].answers} == {200}
    assert all(a.etag for a in result.loads["PUT", 16].answers)
    assert result.loads["GET", 16].body_bytes == 20 * SMALL
    assert result.loads["HEAD", 1].body_bytes == 0
    assert {a.status for a in result.loads["DELETE", 16].answers} <= {200, 204}
    # Deleted for real: a GET of one of them is now a 404 (fire raises on another status).
    target = node.target
    fire(target, [target.request("GET", "smoke/x16/000007")], connections=1, expect=(404,))


def test_a_listing_walks_every_page(node: Server) -> None:
    result = listing(node, 25, 2, page_keys=10)
    assert result.keys == 25
    assert result.pages == 3  # 10 + 10 + 5, each page asked with the previous one's token
    assert len(result.listing_s) == 2
    assert result.fill_per_s > 0


def test_big_objects_single_multipart_and_ranged(node: Server) -> None:
    result = big(node, BIG, part=PART)
    assert result.loads["GET"].body_bytes == BIG
    parts = result.loads["multipart PUT"]
    assert [a.status for a in parts.answers] == [200, 200]
    assert all(a.etag for a in parts.answers)
    ranged = result.loads["ranged GET"]
    assert [a.status for a in ranged.answers] == [206, 206]
    assert [a.body_bytes for a in ranged.answers] == [PART, BIG - PART]
    head = call(node.target, "HEAD", node.target.object_path("big/multipart"))
    assert head.status == 200
    assert int(head.headers["content-length"]) == BIG
    assert head.headers["etag"].strip('"').endswith("-2")  # a multipart ETag: 2 parts
    assert result.mb_per_s("PUT") > 0


def test_concurrent_uploads_report_each_process_memory(node: Server) -> None:
    result = rss(node, MIB, uploads=3)
    assert result.load.ops == 3
    assert {a.status for a in result.load.answers} == {200}
    assert len(result.peak_bytes) == len(node.pids) == 1
    assert result.peak_bytes[0] >= result.before_bytes[0] > 0


def test_a_profile_of_the_node_sets_it_against_its_measured_cost(node: Server) -> None:
    measured = Measured(node.label, node.kind, node.runtime)
    measured.add_run(1, small_ops(node, {16: 32}, tag="profiled").loads)
    sizes = dataclasses.replace(QUICK, profile_s=2.0)
    summary = _profile(node, "4 KiB GET x16", sizes, {node.label: measured})
    assert summary.title == "garage trio: 4 KiB GET x16"
    assert summary.samples > 0, summary.lines
    assert summary.top_area is not None
    assert any(line.startswith("server CPU: the node ") for line in summary.lines)
    assert summary.hint is not None
    assert summary.hint.startswith(summary.top_area)
