"""Every ``garage`` admin command against a running node.

One node per module, a real process: ``garage server --single-node --data-dir D`` on free
ports of 127.0.0.1 (chosen here, since the CLI reads the RPC port from the configuration).
Commands are ``garage -c D/garage.toml <command>``, as an operator types them, and their
stdout, stderr and exit status are checked: results on stdout (tables, or JSON with
``--json``), errors as one line ``garage: ...`` on stderr with status 1.

The console script runs as a subprocess in the tests of the entry point itself (status,
node id, configuration and environment, help); the many per-command cases call the same
entry point, ``garage.cli.main``, in this process, which keeps the module fast (starting
Python and importing the CLI costs a second or two per command). Either way the command
goes through argparse, a throw-away node key, a TCP connection with the secret handshake,
and the node's handlers.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from garage.cli import main

if TYPE_CHECKING:
    from collections.abc import Iterator

GARAGE = Path(sys.executable).parent / "garage"
#: The environment of the CLI: no GARAGE_* variable of the test runner leaks in.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")}


def free_port() -> int:
    """A port that was free a moment ago (the node binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    dir: Path
    proc: subprocess.Popen[str]
    rpc_port: int
    s3_endpoint: str
    key_id: str
    secret: str

    @property
    def config(self) -> Path:
        return self.dir / "garage.toml"


def start_node(data_dir: Path) -> Node:
    rpc, s3 = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(GARAGE), "server", "--single-node", "--data-dir", str(data_dir),
            "--rpc-bind", f"127.0.0.1:{rpc}", "--s3-api-bind", f"127.0.0.1:{s3}",
            "--admin-bind", "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    text = ""
    for line in proc.stdout:
        text += line
        if line.startswith("Stop it with"):
            break
    found = dict(re.findall(r"^\s+(Key ID|Secret key):\s+(\S+)", text, re.M))
    if len(found) != 2:
        proc.kill()
        raise AssertionError(f"the node did not start: {text!r}")
    return Node(data_dir, proc, rpc, f"http://127.0.0.1:{s3}", found["Key ID"], found["Secret key"])


def stop_node(node: Node) -> None:
    node.proc.send_signal(signal.SIGTERM)
    try:
        assert node.proc.wait(timeout=30) == 0
    finally:
        if node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
        if node.proc.stdout is not None:
            node.proc.stdout.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    started = start_node(tmp_path_factory.mktemp("cli") / "node")
    try:
        yield started
    finally:
        stop_node(started)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@contextmanager
def _no_garage_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GARAGE_")}
    try:
        yield
    finally:
        os.environ.update(saved)


def run(node: Node, *args: str) -> Result:
    """``garage -c <node config> <args>`` through the CLI's entry point, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with _no_garage_env(), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(["-c", str(node.config), *args])
        except SystemExit as exc:  # argparse refusing the command line
            code = exc.code if isinstance(exc.code, int) else 2
    return Result(code, out.getvalue(), err.getvalue())


def run_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """The ``garage`` console script as a subprocess."""
    done = subprocess.run(
        [str(GARAGE), *args],
        capture_output=True,
        text=True,
        env=ENV if env is None else env,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def ok(node: Node, *args: str) -> str:
    """Runs a command that must succeed; its stdout."""
    out = run(node, *args)
    assert out.returncode == 0, f"garage {' '.join(args)}: {out.stderr}"
    return out.stdout


def js(node: Node, *args: str) -> Any:
    """Runs a command with --json; its parsed output."""
    return json.loads(ok(node, "--json", *args))


def fails(node: Node, *args: str) -> str:
    """Runs a command that must fail cleanly; its one error line."""
    out = run(node, *args)
    assert out.returncode == 1, f"garage {' '.join(args)} did not fail: {out.stdout}"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("garage: ")
    return lines[0]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def s3_client(node: Node, key_id: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=node.s3_endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="garage",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


# ------------------------------------------------------------------ node and status


def test_status_shows_a_healthy_single_node(node: Node) -> None:
    node_id = (node.dir / "meta" / "node_key.pub").read_bytes().hex()
    out = run_process("-c", str(node.config), "status")
    assert out.returncode == 0, out.stderr
    assert "Cluster health: healthy" in out.stdout
    assert node_id[:16] in out.stdout
    assert f"127.0.0.1:{node.rpc_port}" in out.stdout
    out = run_process("-c", str(node.config), "status", "--json")
    data = json.loads(out.stdout)
    assert data["health"]["status"] == "healthy"
    assert data["layout_version"] >= 1
    (me,) = data["nodes"]
    assert me["id"] == node_id
    assert me["is_up"]
    assert me["role"]["zone"] == "dc1"


def test_errors_are_one_line_on_stderr_with_status_1(node: Node) -> None:
    out = run_process("-c", str(node.config), "bucket", "info", "no-such-bucket")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == "garage: bucket not found: no-such-bucket\n"


def test_the_config_can_be_given_relative_or_in_the_environment(node: Node) -> None:
    out = run_process("-c", f"{node.dir.name}/garage.toml", "bucket", "list", cwd=node.dir.parent)
    assert out.returncode == 0, out.stderr
    assert "default" in out.stdout
    out = run_process("bucket", "list", env={**ENV, "GARAGE_CONFIG_FILE": str(node.config)})
    assert out.returncode == 0, out.stderr
    assert "default" in out.stdout


def test_node_id_prints_the_id_and_address_from_the_config(node: Node) -> None:
    node_id = (node.dir / "meta" / "node_key.pub").read_bytes().hex()
    out = run_process("-c", str(node.config), "node", "id")
    assert out.returncode == 0
    assert out.stdout.strip() == f"{node_id}@127.0.0.1:{node.rpc_port}"
    assert "node connect" in out.stderr
    quiet = run(node, "node", "id", "-q")
    assert quiet.stdout == out.stdout
    assert quiet.stderr == ""
    assert js(node, "node", "id", "-q") == {"id": node_id, "address": f"127.0.0.1:{node.rpc_port}"}


def test_rpc_host_and_secret_can_be_given_instead_of_a_config(node: Node, tmp_path: Path) -> None:
    node_id = (node.dir / "meta" / "node_key.pub").read_bytes().hex()
    secret = re.search(r'rpc_secret = "(\w+)"', node.config.read_text())
    assert secret is not None
    out = run_process("-c", str(tmp_path / "absent.toml"), "status")
    assert out.returncode == 1
    assert "absent.toml" in out.stderr
    host = f"{node_id}@127.0.0.1:{node.rpc_port}"
    env = {**ENV, "GARAGE_RPC_HOST": host, "GARAGE_RPC_SECRET": secret.group(1)}
    out = run_process("-c", str(node.config), "bucket", "list", env=env)
    assert out.returncode == 0, out.stderr
    out = run_process("-c", str(node.config), "-s", "ab" * 32, "status")
    assert out.returncode == 1
    assert "rpc_secret" in out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_a_node_that_is_not_running_is_reported(node: Node) -> None:
    node_id = "cd" * 32
    line = fails(node, "-h", f"{node_id}@127.0.0.1:{free_port()}", "status")
    assert "is `garage server` running" in line


def test_node_connect_refuses_a_malformed_address(node: Node) -> None:
    assert "<node id>@<host>:<port>" in fails(node, "node", "connect", "not-a-node")
    unreachable = f"{'ef' * 32}@127.0.0.1:{free_port()}"
    assert "ef" * 8 in fails(node, "node", "connect", unreachable)


# ------------------------------------------------------------------ buckets


def test_bucket_create_list_info_and_delete(node: Node) -> None:
    name = unique("b")
    assert f"Bucket {name} was created" in ok(node, "bucket", "create", name)
    listing = js(node, "bucket", "list")
    (mine,) = [b for b in listing["buckets"] if name in b["global_aliases"]]
    info = js(node, "bucket", "info", name)
    assert info["id"] == mine["id"]
    assert info["objects"] == 0
    assert info["keys"] == []
    assert js(node, "bucket", "info", mine["id"][:12])["id"] == mine["id"]  # an id prefix
    assert name in ok(node, "bucket", "info", name)
    assert "--yes" in fails(node, "bucket", "delete", name)
    assert "was deleted" in ok(node, "bucket", "delete", "--yes", name)
    assert "bucket not found" in fails(node, "bucket", "info", name)


def test_bucket_errors(node: Node) -> None:
    assert "bucket not found: nope-nope" in fails(node, "bucket", "info", "nope-nope")
    assert "bucket not found" in fails(node, "bucket", "delete", "--yes", "nope-nope")
    assert "invalid bucket name" in fails(node, "bucket", "create", "Not_Valid")
    assert "already in use" in fails(node, "bucket", "create", "default")
    assert "bucket not found" in fails(node, "bucket", "allow", "--read", "--key", "GK", "nope-x")


def test_bucket_aliases_global_and_local(node: Node) -> None:
    name, other = unique("a"), unique("alias")
    ok(node, "bucket", "create", name)
    key = js(node, "key", "create", unique("k"))["key_id"]
    ok(node, "bucket", "alias", name, other)
    assert sorted(js(node, "bucket", "info", other)["global_aliases"]) == sorted([name, other])
    ok(node, "bucket", "alias", name, "mine", "--local", key)
    info = js(node, "bucket", "info", name)
    assert info["local_aliases"] == [{"key_id": key, "alias": "mine"}]
    # Other names keep the bucket from being deleted by one of them.
    assert "other global aliases" in fails(node, "bucket", "delete", "--yes", name)
    ok(node, "bucket", "unalias", other)
    assert "local aliases" in fails(node, "bucket", "delete", "--yes", name)
    ok(node, "bucket", "unalias", "mine", "--local", key)
    assert js(node, "bucket", "info", name)["local_aliases"] == []
    assert "last alias" in fails(node, "bucket", "unalias", name)
    assert "bucket not found" in fails(node, "bucket", "unalias", "never-an-alias")
    ok(node, "bucket", "delete", "--yes", name)


def test_bucket_allow_and_deny_change_a_keys_rights(node: Node) -> None:
    name = unique("p")
    ok(node, "bucket", "create", name)
    key = js(node, "key", "create", unique("k"))["key_id"]
    assert "read yes, write yes, owner no" in ok(
        node, "bucket", "allow", "--read", "--write", name, "--key", key
    )
    (perm,) = js(node, "key", "info", key)["buckets"]
    assert (perm["read"], perm["write"], perm["owner"]) == (True, True, False)
    ok(node, "bucket", "deny", "--write", name, "--key", key)
    (perm,) = js(node, "key", "info", key)["buckets"]
    assert (perm["read"], perm["write"]) == (True, False)
    assert "--read, --write, --owner" in fails(node, "bucket", "allow", name, "--key", key)
    assert "access key not found" in fails(node, "bucket", "allow", "--read", name, "--key", "GKx")


def test_bucket_website_and_quotas(node: Node) -> None:
    name = unique("w")
    ok(node, "bucket", "create", name)
    ok(node, "bucket", "website", "--allow", name, "-e", "404.html")
    info = js(node, "bucket", "info", name)
    assert (info["website"], info["index_document"], info["error_document"]) == (
        True,
        "index.html",
        "404.html",
    )
    ok(node, "bucket", "website", "--deny", name)
    assert js(node, "bucket", "info", name)["website"] is False
    assert "exactly one" in fails(node, "bucket", "website", name)
    ok(node, "bucket", "set-quotas", name, "--max-size", "1GiB", "--max-objects", "1000")
    info = js(node, "bucket", "info", name)
    assert (info["max_size"], info["max_objects"]) == (2**30, 1000)
    ok(node, "bucket", "set-quotas", name, "--max-size", "none")
    info = js(node, "bucket", "info", name)
    assert (info["max_size"], info["max_objects"]) == (None, 1000)
    assert "invalid maximum size" in fails(node, "bucket", "set-quotas", name, "--max-size", "1X")
    assert "must be positive" in fails(node, "bucket", "set-quotas", name, "--max-objects", "0")
    assert "nothing to do" in fails(node, "bucket", "set-quotas", name)


# ------------------------------------------------------------------ keys


def test_key_create_info_rename_and_delete(node: Node) -> None:
    name = unique("key")
    created = js(node, "key", "create", name)
    key_id, secret = created["key_id"], created["secret_key"]
    assert re.fullmatch(r"GK[0-9a-f]{24}", key_id)
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert js(node, "key", "info", name)["secret_key"] is None  # by name, secret hidden
    assert "(redacted)" in ok(node, "key", "info", key_id)
    assert js(node, "key", "info", key_id, "--show-secret")["secret_key"] == secret
    assert {"key_id": key_id, "name": name} in js(node, "key", "list")["keys"]
    ok(node, "key", "rename", key_id, name + "-2")
    assert js(node, "key", "info", key_id)["name"] == name + "-2"
    ok(node, "key", "allow", key_id, "--create-bucket")
    assert js(node, "key", "info", key_id)["allow_create_bucket"] is True
    ok(node, "key", "deny", key_id, "--create-bucket")
    assert js(node, "key", "info", key_id)["allow_create_bucket"] is False
    assert "--create-bucket" in fails(node, "key", "allow", key_id)
    assert "--yes" in fails(node, "key", "delete", key_id)
    assert "was deleted" in ok(node, "key", "delete", key_id, "--yes")
    assert "access key not found" in fails(node, "key", "info", key_id)


def test_key_patterns_must_be_unambiguous(node: Node) -> None:
    js(node, "key", "create", unique("twin"))
    js(node, "key", "create", unique("twin"))
    assert "give more of the key id" in fails(node, "key", "info", "twin")
    assert "access key not found" in fails(node, "key", "info", "no-such-key-name")


def test_key_import(node: Node) -> None:
    key_id, secret = "GK" + uuid.uuid4().hex[:24], uuid.uuid4().hex * 2
    assert "--yes" in fails(node, "key", "import", key_id, secret)
    imported = js(node, "key", "import", key_id, secret, "-n", "old", "--yes")
    assert (imported["key_id"], imported["secret_key"], imported["name"]) == (key_id, secret, "old")
    assert "already exists" in fails(node, "key", "import", key_id, secret, "--yes")
    assert "invalid access key id" in fails(node, "key", "import", "AKIA1", secret, "--yes")


def test_a_new_key_and_bucket_work_over_s3(node: Node) -> None:
    created = js(node, "key", "create", unique("s3"))
    name = unique("s3")
    ok(node, "bucket", "create", name)
    ok(node, "bucket", "allow", "--read", "--write", name, "--key", created["key_id"])
    s3 = s3_client(node, created["key_id"], created["secret_key"])
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [name]


# ------------------------------------------------------------------ workers and repairs


def test_worker_list_info_get_and_set(node: Node) -> None:
    workers = js(node, "worker", "list")["workers"]
    names = {w["name"] for w in workers}
    assert {"object sync", "Block scrub worker", "Block resync worker #1"} <= names
    scrub = next(w for w in workers if w["name"] == "Block scrub worker")
    assert js(node, "worker", "info", str(scrub["tid"]))["worker"]["name"] == "Block scrub worker"
    assert "Worker name" in ok(node, "worker", "info", str(scrub["tid"]))
    assert "no worker with TID 99999" in fails(node, "worker", "info", "99999")
    assert all(w["errors"] > 0 for w in js(node, "worker", "list", "-e")["workers"])
    ok(node, "worker", "set", "resync-tranquility", "5")
    (value,) = js(node, "worker", "get", "resync-tranquility")["vars"]
    assert value["value"] == "5"
    all_vars = {v["name"] for v in js(node, "worker", "get")["vars"]}
    assert {"resync-tranquility", "resync-worker-count", "scrub-tranquility"} <= all_vars
    assert "unknown background variable" in fails(node, "worker", "set", "nope", "1")
    assert "invalid value" in fails(node, "worker", "set", "resync-worker-count", "99")
    assert "read-only" in fails(node, "worker", "set", "scrub-last-completed", "x")
    (per_node,) = js(node, "worker", "get", "-a", "resync-tranquility")["answers"]
    assert per_node["answer"]["vars"][0]["value"] == "5"


def test_repairs_need_yes_and_start_workers(node: Node) -> None:
    assert "--yes" in fails(node, "repair", "tables")
    assert "Full sync of the 11 tables launched" in ok(node, "repair", "--yes", "tables")
    for what in ("versions", "mpu", "block-refs", "block_refs", "block-rc", "blocks", "rebalance"):
        message = js(node, "repair", what, "--yes")["message"]
        tid = re.search(r"worker (\d+)", message)
        assert tid is not None, message
        assert js(node, "worker", "info", tid.group(1))["worker"]["tid"] == int(tid.group(1))
    ok(node, "repair", "--yes", "scrub", "set-tranquility", "7")
    (value,) = js(node, "worker", "get", "scrub-tranquility")["vars"]
    assert value["value"] == "7"
    for command in ("start", "pause", "resume", "cancel"):
        assert "sent" in ok(node, "repair", "--yes", "scrub", command)
    (answer,) = js(node, "repair", "-a", "--yes", "tables")["answers"]
    assert "launched" in answer["answer"]["message"]


# ------------------------------------------------------------------ stats, blocks, meta


def test_stats(node: Node) -> None:
    stats = js(node, "stats")
    assert {t["name"] for t in stats["tables"]} >= {"bucket_v2", "key", "object", "version"}
    assert next(t for t in stats["tables"] if t["name"] == "bucket_v2")["items"] >= 1
    (disk,) = stats["cluster"]
    assert disk["partitions"] == 256
    assert disk["data_avail"] > 0
    assert stats["data_avail_estimate"] > 0
    assert "Table stats" in ok(node, "stats")
    (per_node,) = js(node, "stats", "-a")["answers"]
    assert per_node["answer"]["cluster"] == []


def test_block_commands(node: Node) -> None:
    assert js(node, "block", "list-errors") == {"errors": []}
    assert "No block has a resync error" in ok(node, "block", "list-errors")
    zero = "00" * 32
    info = js(node, "block", "info", zero)
    assert (info["hash"], info["refcount"], info["refs"]) == (zero, 0, [])
    assert "64 hex digits" in fails(node, "block", "info", "abc")
    assert "0 blocks scheduled" in ok(node, "block", "retry-now", "--all")
    assert "0 blocks scheduled for resync now (1 had no resync error)" in ok(
        node, "block", "retry-now", zero
    )
    assert "--all or the hashes" in fails(node, "block", "retry-now")
    assert "--yes" in fails(node, "block", "purge", zero)
    assert "Purged 1 blocks: 0 objects" in ok(node, "block", "purge", "--yes", zero)


def test_meta_snapshot(node: Node) -> None:
    message = js(node, "meta", "snapshot")["message"]
    path = Path(message.rsplit(" ", 1)[1])
    assert path.parent == node.dir / "meta" / "snapshots"
    assert (path / "db.sqlite").is_file()
    ok(node, "meta", "snapshot")
    ok(node, "meta", "snapshot", "--all")
    assert len(list(path.parent.iterdir())) == 2  # the two newest are kept


# ------------------------------------------------------------------ layout


def test_layout_show_and_history(node: Node) -> None:
    show = js(node, "layout", "show")
    version = show["version"]
    assert version >= 1
    assert len(show["roles"]) == 1
    assert show["roles"][0]["partitions"] == 256
    assert f"Current cluster layout version: {version}" in ok(node, "layout", "show")
    history = js(node, "layout", "history")
    assert history["current"] == version
    assert history["versions"][0] == {
        "version": version, "status": "current", "storage_nodes": 1, "gateway_nodes": 0
    }  # fmt: skip
    assert "LAYOUT HISTORY" in ok(node, "layout", "history")


def test_layout_errors(node: Node) -> None:
    node_id = (node.dir / "meta" / "node_key.pub").read_bytes().hex()
    assert "invalid capacity" in fails(node, "layout", "assign", node_id[:6], "-c", "lots")
    assert "invalid capacity 0" in fails(node, "layout", "assign", node_id[:6], "-c", "0")
    assert "no known node" in fails(node, "layout", "assign", "zz", "-z", "dc1", "-c", "1G")
    assert "-c and -g" in fails(node, "layout", "assign", node_id[:6], "-c", "1G", "-g")
    version = js(node, "status")["layout_version"]
    line = fails(node, "layout", "apply", "--version", str(version + 5))
    assert f"invalid new layout version {version + 5}" in line
    assert f"must be {version + 1}" in line
    ok(node, "layout", "revert", "--yes")
    assert "no staged changes" in fails(node, "layout", "apply", "--version", str(version + 1))
    assert "invalid zone redundancy" in fails(node, "layout", "config", "-r", "5")
    assert "--yes" in fails(node, "layout", "revert")
    assert "no known node" in fails(node, "layout", "remove", "zz")
    line = fails(node, "layout", "skip-dead-nodes", "--version", str(version))
    assert "only one live layout version" in line


def test_layout_stage_review_revert_then_apply(node: Node) -> None:
    node_id = (node.dir / "meta" / "node_key.pub").read_bytes().hex()
    version = js(node, "status")["layout_version"]
    ok(node, "layout", "assign", node_id[:8], "-c", "5G", "-t", "fast")
    show = js(node, "layout", "show")
    (change,) = show["staged_role_changes"]
    assert (change["id"], change["capacity"], change["tags"]) == (node_id, 5 * 10**9, ["fast"])
    assert show["next"]["version"] == version + 1
    assert f"garage layout apply --version {version + 1}" in ok(node, "layout", "show")
    ok(node, "layout", "config", "-r", "1")
    assert js(node, "layout", "show")["staged_zone_redundancy"] == 1
    ok(node, "layout", "revert", "--yes")
    assert js(node, "layout", "show")["staged_role_changes"] == []
    ok(node, "layout", "assign", node_id[:8], "-c", "5G")
    assert "has been applied" in ok(node, "layout", "apply", "--version", str(version + 1))
    assert js(node, "status")["layout_version"] == version + 1
    (role,) = js(node, "layout", "show")["roles"]
    assert role["capacity"] == 5 * 10**9


def test_help_is_long_option_since_h_is_the_rpc_host() -> None:
    out = run_process("--help")
    assert out.returncode == 0
    assert "--rpc-host" in out.stdout
    assert "bucket" in out.stdout
