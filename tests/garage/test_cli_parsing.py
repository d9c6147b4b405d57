"""The pure parts of the CLI: node addresses and prefixes, capacities, quotas, the staging
of roles, and the output formats."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage._admin_server import parse_quota
from garage._cli_client import CliError, node_address
from garage._cli_cluster import (
    find_matching_node,
    parse_capacity,
    parse_zone_redundancy,
    stage_assign,
)
from garage._cli_format import format_table, render, to_json
from garage.admin_rpc import (
    AdminRpcError,
    BucketListing,
    BucketSummary,
    Done,
    LocalAliasInfo,
    NodeAnswer,
    PerNode,
    parse_node_address,
)
from garage.cli import EXIT_USAGE, _parser, main
from garage_rpc.layout import LayoutHistory, NodeRole
from garage_util.config import parse_config
from garage_util.data import FixedBytes32

if TYPE_CHECKING:
    from pathlib import Path

A = FixedBytes32.from_hex("a1" * 32)
B = FixedBytes32.from_hex("a2" * 32)
C = FixedBytes32.from_hex("b0" * 32)


# ------------------------------------------------------------------ node addresses


def test_node_address_parses_host_port_and_ipv6() -> None:
    assert parse_node_address(f"{'ab' * 32}@127.0.0.1:3901") == (
        FixedBytes32.from_hex("ab" * 32),
        "127.0.0.1",
        3901,
    )
    assert parse_node_address(f"{'AB' * 32}@[::1]:1")[1:] == ("::1", 1)
    assert parse_node_address(f"{'ab' * 32}@node1.example:65535")[1:] == ("node1.example", 65535)


@pytest.mark.parametrize(
    "text",
    [
        "ab" * 32,  # no address
        f"{'ab' * 31}@h:1",  # short id
        f"{'zz' * 32}@h:1",  # not hex
        f"{'ab' * 32}@h",  # no port
        f"{'ab' * 32}@h:0",
        f"{'ab' * 32}@h:65536",
        f"{'ab' * 32}@::1:3901",  # IPv6 without brackets
        f"{'ab' * 32}@[::1]3901",
        f"{'ab' * 32}@:3901",
    ],
)
def test_malformed_node_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_node_address(text)


def test_node_address_of_a_config(tmp_path: Path) -> None:
    base = {
        "metadata_dir": "meta",
        "data_dir": "data",
        "replication_factor": 1,
        "rpc_secret": "00" * 32,
        "s3_api": {"s3_region": "garage"},
    }
    assert node_address(parse_config({**base, "rpc_bind_addr": "0.0.0.0:3901"})) == (
        "127.0.0.1",
        3901,
    )
    assert node_address(parse_config({**base, "rpc_bind_addr": "[::]:3901"})) == ("::1", 3901)
    assert node_address(parse_config({**base, "rpc_bind_addr": "10.0.0.5:4000"})) == (
        "10.0.0.5",
        4000,
    )
    public = {**base, "rpc_bind_addr": "0.0.0.0:3901", "rpc_public_addr": "192.0.2.1:3901"}
    assert node_address(parse_config(public)) == ("192.0.2.1", 3901)
    with pytest.raises(CliError, match="free port"):
        node_address(parse_config({**base, "rpc_bind_addr": "127.0.0.1:0"}))


# ------------------------------------------------------------------ node prefixes


def test_a_unique_prefix_finds_its_node() -> None:
    assert find_matching_node([A, B, C], "a1") == A
    assert find_matching_node([A, B, C], "B") == C  # case-insensitive
    assert find_matching_node([A, A, C], "a") == A  # the same node twice is one node


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(CliError, match=r"ambiguous: it matches 2 nodes \(a1a1.*a2a2"):
        find_matching_node([A, B, C], "a")
    with pytest.raises(CliError, match="matches 3 nodes"):
        find_matching_node([A, B, C], "")


def test_an_unknown_prefix_says_so() -> None:
    with pytest.raises(CliError, match="no known node has an id starting with 'c'"):
        find_matching_node([A, B, C], "c")


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=6, unique=True))
def test_every_full_id_matches_exactly_its_node(raw: list[bytes]) -> None:
    nodes = [FixedBytes32(r) for r in raw]
    for node in nodes:
        assert find_matching_node(nodes, node.hex()) == node


# ------------------------------------------------------------------ values


@pytest.mark.parametrize(
    ("text", "size"), [("1G", 10**9), ("1GiB", 2**30), ("500 MB", 5 * 10**8), ("4096", 4096)]
)
def test_capacities_take_units(text: str, size: int) -> None:
    assert parse_capacity(text) == size


@pytest.mark.parametrize(("text", "words"), [("0", "give a positive"), ("12Q", "unit"), ("", "")])
def test_bad_capacities_are_refused(text: str, words: str) -> None:
    with pytest.raises(CliError, match=f"invalid capacity.*{words}"):
        parse_capacity(text)


def test_zone_redundancy_is_max_or_a_number_of_zones() -> None:
    assert parse_zone_redundancy("max", 3) == "maximum"
    assert parse_zone_redundancy("none", 3) == "maximum"  # Garage's spelling too
    assert parse_zone_redundancy("2", 3) == 2
    for bad in ("0", "4", "two", "-1"):
        with pytest.raises(CliError, match="invalid zone redundancy"):
            parse_zone_redundancy(bad, 3)


def test_quotas_are_positive_numbers_or_none() -> None:
    assert parse_quota(None, "x") is None
    assert parse_quota("none", "x") is None
    assert parse_quota("1000", "x") == 1000
    for bad in ("0", "-5", "1G", "ten"):
        with pytest.raises(AdminRpcError, match="expected a positive number"):
            parse_quota(bad, "x")


# ------------------------------------------------------------------ staging roles


def test_assign_stages_new_roles_and_keeps_what_is_not_given_again() -> None:
    history = stage_assign(
        LayoutHistory.new(3), [A, B], zone="dc1", capacity=10**9, gateway=False, tags=["ssd"],
        now_ms=1,
    )  # fmt: skip
    staged = dict(history.staged.roles.items())
    assert staged[A].role == NodeRole("dc1", 10**9, ("ssd",))
    history = stage_assign(
        history, [A], zone=None, capacity=2 * 10**9, gateway=False, tags=[], now_ms=2
    )
    assert dict(history.staged.roles.items())[A].role == NodeRole("dc1", 2 * 10**9, ("ssd",))
    history = stage_assign(history, [B], zone="dc2", capacity=None, gateway=True, tags=[], now_ms=3)
    assert dict(history.staged.roles.items())[B].role == NodeRole("dc2", None, ("ssd",))


def test_assign_refuses_incomplete_or_contradictory_roles() -> None:
    empty = LayoutHistory.new(3)
    with pytest.raises(CliError, match="give its zone with -z"):
        stage_assign(empty, [A], zone=None, capacity=1, gateway=False, tags=[], now_ms=1)
    with pytest.raises(CliError, match="give its capacity with -c"):
        stage_assign(empty, [A], zone="z", capacity=None, gateway=False, tags=[], now_ms=1)
    with pytest.raises(CliError, match="-c and -g"):
        stage_assign(empty, [A], zone="z", capacity=1, gateway=True, tags=[], now_ms=1)
    with pytest.raises(CliError, match="zone name cannot be empty"):
        stage_assign(empty, [A], zone=" ", capacity=1, gateway=False, tags=[], now_ms=1)
    with pytest.raises(CliError, match="cannot replace node"):
        stage_assign(
            empty, [A], zone="z", capacity=1, gateway=False, tags=[], replace=[B], now_ms=1
        )


def test_assign_with_replace_stages_the_removal() -> None:
    history = stage_assign(
        LayoutHistory.new(1), [A], zone="z", capacity=10**9, gateway=False, tags=[], now_ms=1
    )
    history, _ = history.apply_staged_changes(1, 2)
    history = stage_assign(
        history, [B], zone="z", capacity=10**9, gateway=False, tags=[], replace=[A], now_ms=3
    )
    staged = dict(history.staged.roles.items())
    assert staged[A].role is None
    assert staged[B].role == NodeRole("z", 10**9)
    new, _ = history.apply_staged_changes(2, 4)
    assert new.current.all_nodes == (B,)


# ------------------------------------------------------------------ output


def test_tables_align_columns() -> None:
    text = format_table([["ID", "Name"], ["1", "alice"], ["22", ""]])
    assert text.splitlines() == ["ID  Name", "1   alice", "22"]
    assert format_table([]) == ""


def test_json_output_has_full_ids_and_nested_answers() -> None:
    listing = BucketListing(
        (BucketSummary("ab" * 32, 1000, ("photos",), (LocalAliasInfo("GK1", "mine"),)),)
    )
    data = json.loads(
        to_json(PerNode((NodeAnswer("cd" * 32, listing), NodeAnswer("ef", None, "x"))))
    )
    assert data["answers"][0]["answer"]["buckets"][0] == {
        "id": "ab" * 32,
        "created_ms": 1000,
        "global_aliases": ["photos"],
        "local_aliases": [{"key_id": "GK1", "alias": "mine"}],
    }
    assert data["answers"][1] == {"node": "ef", "answer": None, "error": "x"}
    assert json.loads(to_json({"id": A})) == {"id": A.hex()}


def test_rendered_answers_for_people() -> None:
    assert render(Done("Bucket x was created.")) == "Bucket x was created."
    text = render(PerNode((NodeAnswer("cd" * 32, Done("ok")), NodeAnswer("ef" * 32, None, "down"))))
    assert "==== NODE " + "cd" * 32 in text
    assert "ok" in text
    assert "error: down" in text
    assert render(BucketListing(())) == "No buckets."


# ------------------------------------------------------------------ command line


def test_json_and_confirmation_flags_go_before_or_after_the_command() -> None:
    parser = _parser()
    assert parser.parse_args(["--json", "bucket", "list"]).json is True
    assert parser.parse_args(["bucket", "list", "--json"]).json is True
    assert parser.parse_args(["bucket", "list"]).json is False
    assert parser.parse_args(["repair", "--yes", "tables"]).yes is True
    assert parser.parse_args(["repair", "tables", "--yes"]).yes is True
    assert parser.parse_args(["repair", "block_refs", "--yes"]).what == "block_refs"
    args = parser.parse_args(
        ["-h", "x@y:1", "repair", "-a", "--yes", "scrub", "set-tranquility", "3"]
    )
    assert (args.rpc_host, args.all_nodes, args.scrub_command, args.tranquility) == (
        "x@y:1",
        True,
        "set-tranquility",
        3,
    )


def test_a_command_line_mistake_is_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["layout", "apply"])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        "garage: the following arguments are required: --version "
        "(see `garage layout apply --help`)\n"
    )
