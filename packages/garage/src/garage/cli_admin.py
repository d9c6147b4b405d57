"""The ``garage`` commands that administer a running node (Garage: src/garage/cli/).

``garage status``, ``node``, ``layout``, ``bucket``, ``key``, ``worker``, ``repair``,
``stats``, ``block`` and ``meta`` talk to a node over RPC (see :mod:`garage._cli_client`
for how the node and the secret are found). Each command is parsed here, checked as far as
it can be without the node (sizes, confirmations, hashes: an error costs no connection),
then run against the node: a request of :mod:`garage.admin_rpc`, or the layout commands of
:mod:`garage._cli_cluster`. ``garage node id`` reads the local configuration only.

Output: tables for people on stdout, or with ``--json`` (before or after the command) one
JSON document for scripts. Errors: one line ``garage: <what went wrong>`` on stderr and
exit status 1. Operations that delete or overwrite (``bucket delete``, ``key delete``,
``key import``, ``layout revert``, ``repair``, ``block purge``) need ``--yes``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from typing import TYPE_CHECKING, Final, TextIO, TypeVar, cast

import anyio

from garage_util.config import SecretOverrides, parse_size

from . import _cli_cluster as cluster
from ._cli_client import (
    CliError,
    node_address,
    open_client,
    read_config,
    read_node_id,
    resolve_target,
)
from ._cli_format import render, to_json
from .admin_rpc import (
    AdminRequest,
    AliasBucket,
    CreateBucket,
    CreateKey,
    DeleteBucket,
    DeleteKey,
    GetBlockInfo,
    GetBucketInfo,
    GetKeyInfo,
    GetStats,
    GetWorkerInfo,
    GetWorkerVars,
    ImportKey,
    LaunchRepair,
    ListBlockErrors,
    ListBuckets,
    ListKeys,
    ListWorkers,
    PurgeBlocks,
    RenameKey,
    RetryBlocks,
    SetBucketPermissions,
    SetBucketQuotas,
    SetBucketWebsite,
    SetKeyCreateBucket,
    SetWorkerVar,
    SnapshotMetadata,
    UnaliasBucket,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._cli_client import Client

    #: The part of a command that runs against the node.
    Remote = Callable[[Client], Awaitable[cluster.Output]]

__all__ = ["EXIT_ERROR", "add_commands", "add_global_options", "run"]

_P = TypeVar("_P", bound=argparse.ArgumentParser)

#: Exit status of a command that failed (Garage's).
EXIT_ERROR: Final = 1
_HASH_HEX_LEN: Final = 64


# ------------------------------------------------------------------ parsing


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The options every remote command shares (before the command name).

    The parser must have been built with ``add_help=False``: ``-h`` is the RPC host, as
    in Garage (``--help`` stays).
    """
    parser.add_argument(
        "-h",
        "--rpc-host",
        default=os.environ.get("GARAGE_RPC_HOST") or None,
        metavar="ID@HOST:PORT",
        help="the node to talk to (env GARAGE_RPC_HOST; default: the node of the config)",
    )
    parser.add_argument(
        "-s",
        "--rpc-secret",
        help="the cluster's rpc_secret (env GARAGE_RPC_SECRET; default: from the config)",
    )
    parser.add_argument(
        "--rpc-secret-file", help="a file holding the rpc_secret (env GARAGE_RPC_SECRET_FILE)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")


def _leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    build: Callable[[argparse.Namespace], Remote | None],
    help: str,
    **kwargs: object,
) -> argparse.ArgumentParser:
    """A command that does something: it accepts ``--json`` too, and knows its builder."""
    parser = sub.add_parser(name, help=help, description=help, **kwargs)  # type: ignore[arg-type]  # argparse's kwargs
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser.set_defaults(build=build)
    return parser


def _group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _yes(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--yes", action="store_true", help=f"confirm: {what}")


def add_commands(commands: argparse._SubParsersAction[_P]) -> None:
    """Registers every remote command (and ``node id``) on the ``garage`` parser."""
    # The sub-parsers are of the parser's class; these helpers need only its base.
    sub = cast("argparse._SubParsersAction[argparse.ArgumentParser]", commands)
    _leaf(sub, "status", _status, "show the cluster: health, nodes, roles")
    _node_commands(sub)
    _layout_commands(sub)
    _bucket_commands(sub)
    _key_commands(sub)
    _worker_commands(sub)
    _repair_commands(sub)
    p = _leaf(sub, "stats", _stats, "show table sizes, block counts and free space")
    p.add_argument("-a", "--all-nodes", action="store_true", help="from every node")
    _block_commands(sub)
    meta = _group(sub, "meta", "operations on the metadata db")
    p = _leaf(meta, "snapshot", _meta_snapshot, "save a snapshot of the metadata db")
    p.add_argument("--all", action="store_true", help="on every node of the layout")


def _node_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = _group(sub, "node", "operations on nodes")
    p = _leaf(node, "id", _no_remote, "print this node's id and address (from the config)")
    p.add_argument("-q", "--quiet", action="store_true", help="no instructions on stderr")
    p = _leaf(node, "connect", _node_connect, "make the node connect to another node")
    p.add_argument("node", metavar="ID@HOST:PORT", help="the node to connect to")


def _layout_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    layout = _group(sub, "layout", "operations on the cluster layout (node roles)")
    _leaf(layout, "show", _layout_show, "show the layout, staged changes and their effect")
    p = _leaf(layout, "assign", _layout_assign, "stage a role for nodes")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="node id prefixes")
    p.add_argument("-z", "--zone", help="the node's zone (datacenter, rack...)")
    p.add_argument("-c", "--capacity", help="storage capacity (bytes, or with a unit: 1G, 2TiB)")
    p.add_argument("-g", "--gateway", action="store_true", help="a gateway node (no storage)")
    p.add_argument("-t", "--tag", action="append", default=[], dest="tags", help="a tag")
    p.add_argument(
        "--replace", action="append", default=[], metavar="NODE", help="a node to remove"
    )
    p = _leaf(layout, "remove", _layout_remove, "stage the removal of a node's role")
    p.add_argument("node", metavar="NODE", help="node id prefix")
    p = _leaf(layout, "config", _layout_config, "stage layout parameters")
    p.add_argument("-r", "--redundancy", help="zone redundancy: 'max', or a number of zones")
    p = _leaf(layout, "apply", _layout_apply, "apply the staged changes")
    p.add_argument(
        "--version", type=int, required=True, help="the new version: current version + 1"
    )
    p = _leaf(layout, "revert", _layout_revert, "drop every staged change")
    _yes(p, "drop the staged changes")
    _leaf(layout, "history", _layout_history, "show the layout versions and trackers")
    p = _leaf(
        layout, "skip-dead-nodes", _layout_skip, "finish a layout transition without dead nodes"
    )
    p.add_argument("--version", type=int, required=True, help="the layout version to assume")
    p.add_argument(
        "--allow-missing-data",
        action="store_true",
        help="also when too few nodes completed a sync (some data may be lost)",
    )


def _bucket_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bucket = _group(sub, "bucket", "operations on buckets")
    _leaf(bucket, "list", _send(lambda a: ListBuckets(), "listing buckets"), "list buckets")
    p = _leaf(bucket, "info", _send(lambda a: GetBucketInfo(a.name)), "show a bucket")
    p.add_argument("name", help="bucket name, or id (a unique prefix of 8+ hex digits)")
    p = _leaf(bucket, "create", _send(lambda a: CreateBucket(a.name)), "create a bucket")
    p.add_argument("name", help="bucket name")
    p = _leaf(bucket, "delete", _bucket_delete, "delete an empty bucket")
    p.add_argument("name", help="bucket name")
    _yes(p, "delete the bucket")
    p = _leaf(bucket, "alias", _bucket_alias, "give a bucket another name")
    p.add_argument("bucket", help="existing bucket (name or id)")
    p.add_argument("new_name", help="the new name")
    p.add_argument("--local", metavar="KEY", help="a name local to this access key")
    p = _leaf(bucket, "unalias", _bucket_unalias, "take a name back from a bucket")
    p.add_argument("name", help="the name")
    p.add_argument("--local", metavar="KEY", help="a name local to this access key")
    for action, allow in (("allow", True), ("deny", False)):
        what = "give a key rights on" if allow else "take rights on a bucket from"
        p = _leaf(bucket, action, functools.partial(_bucket_perm, allow=allow), f"{what} a bucket")
        p.add_argument("bucket", help="bucket name or id")
        p.add_argument("--key", required=True, dest="key_pattern", help="key id or name")
        p.add_argument("--read", action="store_true", help="read objects")
        p.add_argument("--write", action="store_true", help="write and delete objects")
        p.add_argument("--owner", action="store_true", help="configure and delete the bucket")
    p = _leaf(bucket, "website", _bucket_website, "serve a bucket as a website, or stop")
    p.add_argument("bucket", help="bucket name or id")
    p.add_argument("--allow", action="store_true", help="serve it")
    p.add_argument("--deny", action="store_true", help="stop serving it")
    p.add_argument("-i", "--index-document", default="index.html", help="the index document")
    p.add_argument("-e", "--error-document", help="the error document")
    p = _leaf(bucket, "set-quotas", _bucket_quotas, "set a bucket's quotas")
    p.add_argument("bucket", help="bucket name or id")
    p.add_argument("--max-size", help="maximum size (1G, 500MiB...), or 'none'")
    p.add_argument("--max-objects", help="maximum number of objects, or 'none'")


def _key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = _group(sub, "key", "operations on S3 access keys")
    _leaf(key, "list", _send(lambda a: ListKeys(), "listing keys"), "list access keys")
    p = _leaf(key, "info", _send(lambda a: GetKeyInfo(a.pattern, a.show_secret)), "show a key")
    p.add_argument("pattern", metavar="KEY", help="key id, id prefix or part of its name")
    p.add_argument("--show-secret", action="store_true", help="show the secret key")
    p = _leaf(key, "create", _send(lambda a: CreateKey(a.name)), "create an access key")
    p.add_argument("name", nargs="?", default="Unnamed key", help="the key's name")
    p = _leaf(key, "rename", _send(lambda a: RenameKey(a.pattern, a.new_name)), "rename a key")
    p.add_argument("pattern", metavar="KEY", help="key id or name")
    p.add_argument("new_name", help="the new name")
    p = _leaf(key, "delete", _key_delete, "delete an access key")
    p.add_argument("pattern", metavar="KEY", help="key id or name")
    _yes(p, "delete the key")
    for action, allow in (("allow", True), ("deny", False)):
        build = functools.partial(_key_perm, allow=allow)
        p = _leaf(key, action, build, f"{action} a key to create buckets")
        p.add_argument("pattern", metavar="KEY", help="key id or name")
        p.add_argument("--create-bucket", action="store_true", help="S3 CreateBucket")
    p = _leaf(key, "import", _key_import, "import an access key (id and secret)")
    p.add_argument("key_id", help="the access key id (GK...)")
    p.add_argument("secret_key", help="the secret key (64 hex digits)")
    p.add_argument("-n", "--name", default="Imported key", help="the key's name")
    _yes(p, "import the key")


def _worker_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = _group(sub, "worker", "background workers and their variables")
    p = _leaf(
        worker, "list", _send(lambda a: ListWorkers(a.busy, a.errors)), "list background workers"
    )
    p.add_argument("-b", "--busy", action="store_true", help="only busy workers")
    p.add_argument("-e", "--errors", action="store_true", help="only workers with errors")
    p = _leaf(worker, "info", _send(lambda a: GetWorkerInfo(a.tid)), "show one worker")
    p.add_argument("tid", type=int, help="the worker's task id (see worker list)")
    p = _leaf(
        worker,
        "get",
        _send(lambda a: GetWorkerVars(a.variable, a.all_nodes)),
        "show background variables",
    )
    p.add_argument("variable", nargs="?", help="one variable (default: all)")
    p.add_argument("-a", "--all-nodes", action="store_true", help="from every node")
    p = _leaf(
        worker,
        "set",
        _send(lambda a: SetWorkerVar(a.variable, a.value, a.all_nodes)),
        "set a background variable",
    )
    p.add_argument("variable", help="the variable")
    p.add_argument("value", help="its new value")
    p.add_argument("-a", "--all-nodes", action="store_true", help="on every node")


_REPAIRS: Final = {
    "tables": "full sync of the metadata tables",
    "blocks": "resync every block (fetch missing ones, offload unneeded ones)",
    "versions": "delete versions whose object or upload is gone",
    "mpu": "delete multipart uploads whose object is gone",
    "block-refs": "delete block references whose version is gone",
    "block-rc": "recount the blocks' reference counts",
    "rebalance": "move blocks to their primary data directory",
}


def _repair_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    repair = sub.add_parser("repair", help="launch a repair on the node")
    repair.add_argument("-a", "--all-nodes", action="store_true", help="on every node")
    _yes(repair, "launch the repair")
    whats = repair.add_subparsers(dest="what", required=True, metavar="WHAT")

    def options(p: argparse.ArgumentParser) -> None:
        # Also accepted after the repair name (argparse reads them there only if declared).
        p.add_argument("-a", "--all-nodes", action="store_true", default=argparse.SUPPRESS)
        p.add_argument("--yes", action="store_true", default=argparse.SUPPRESS)

    for name, help in _REPAIRS.items():
        aliases = [name.replace("-", "_")] if "-" in name else []
        options(_leaf(whats, name, _repair, help, aliases=aliases))
    scrub = whats.add_parser("scrub", help="control the scrub (verify every block)")
    commands = scrub.add_subparsers(dest="scrub_command", required=True, metavar="COMMAND")
    for name in ("start", "pause", "resume", "cancel"):
        options(_leaf(commands, name, _repair, f"{name} the scrub"))
    p = _leaf(commands, "set-tranquility", _repair, "set the scrub's tranquility")
    p.add_argument("tranquility", type=int, help="sleep this many times each step's duration")
    options(p)


def _block_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    block = _group(sub, "block", "operations on data blocks")
    _leaf(
        block,
        "list-errors",
        _send(lambda a: ListBlockErrors(), "listing errors"),
        "list blocks with resync errors",
    )
    p = _leaf(block, "info", _block_info, "show a block and the objects that use it")
    p.add_argument("hash", help="the block hash (64 hex digits)")
    p = _leaf(block, "retry-now", _block_retry, "retry the resync of blocks now")
    p.add_argument("blocks", nargs="*", metavar="HASH", help="block hashes")
    p.add_argument("--all", action="store_true", help="every block with a resync error")
    p = _leaf(block, "purge", _block_purge, "delete every object that uses these blocks")
    p.add_argument("blocks", nargs="+", metavar="HASH", help="block hashes")
    _yes(p, "delete the objects")


# ------------------------------------------------------------------ builders


def _send(
    make: Callable[[argparse.Namespace], AdminRequest], what: str = ""
) -> Callable[[argparse.Namespace], Remote]:
    """A builder that sends the request ``make(args)`` and prints the answer."""

    def build(args: argparse.Namespace) -> Remote:
        return _request(make(args), what)

    return build


def _request(request: AdminRequest, what: str = "") -> Remote:
    async def remote(client: Client) -> cluster.Output:
        response = await client.admin(request, what=what)
        return cluster.Output(render(response), response)

    return remote


def _no_remote(args: argparse.Namespace) -> None:
    return None


def _confirm(args: argparse.Namespace, what: str) -> None:
    if not getattr(args, "yes", False):
        raise CliError(f"add --yes to {what}")


def _status(args: argparse.Namespace) -> Remote:
    return cluster.status


def _stats(args: argparse.Namespace) -> Remote:
    return _request(GetStats(all_nodes=args.all_nodes), "gathering statistics")


def _meta_snapshot(args: argparse.Namespace) -> Remote:
    return _request(SnapshotMetadata(all_nodes=args.all), "taking a snapshot")


def _node_connect(args: argparse.Namespace) -> Remote:
    return functools.partial(cluster.node_connect, node=args.node)


def _layout_show(args: argparse.Namespace) -> Remote:
    return cluster.layout_show


def _layout_assign(args: argparse.Namespace) -> Remote:
    if args.capacity is not None:
        cluster.parse_capacity(args.capacity)  # fail before connecting
    return functools.partial(
        cluster.layout_assign,
        patterns=args.nodes,
        zone=args.zone,
        capacity=args.capacity,
        gateway=args.gateway,
        tags=args.tags,
        replace=args.replace,
    )


def _layout_remove(args: argparse.Namespace) -> Remote:
    return functools.partial(cluster.layout_remove, pattern=args.node)


def _layout_config(args: argparse.Namespace) -> Remote:
    return functools.partial(cluster.layout_config, redundancy=args.redundancy)


def _layout_apply(args: argparse.Namespace) -> Remote:
    return functools.partial(cluster.layout_apply, version=args.version)


def _layout_revert(args: argparse.Namespace) -> Remote:
    _confirm(args, "really drop every staged layout change")
    return functools.partial(cluster.layout_revert, yes=True)


def _layout_history(args: argparse.Namespace) -> Remote:
    return cluster.layout_history


def _layout_skip(args: argparse.Namespace) -> Remote:
    return functools.partial(
        cluster.layout_skip_dead_nodes,
        version=args.version,
        allow_missing_data=args.allow_missing_data,
    )


def _bucket_delete(args: argparse.Namespace) -> Remote:
    _confirm(args, f"really delete bucket {args.name}")
    return _request(DeleteBucket(args.name))


def _bucket_alias(args: argparse.Namespace) -> Remote:
    return _request(AliasBucket(args.bucket, args.new_name, args.local))


def _bucket_unalias(args: argparse.Namespace) -> Remote:
    return _request(UnaliasBucket(args.name, args.local))


def _bucket_perm(args: argparse.Namespace, *, allow: bool) -> Remote:
    if not (args.read or args.write or args.owner):
        raise CliError("nothing to do: give at least one of --read, --write, --owner")
    return _request(
        SetBucketPermissions(
            args.bucket, args.key_pattern, args.read, args.write, args.owner, allow
        )
    )


def _bucket_website(args: argparse.Namespace) -> Remote:
    if args.allow == args.deny:
        raise CliError("give exactly one of --allow and --deny")
    return _request(
        SetBucketWebsite(args.bucket, args.allow, args.index_document, args.error_document)
    )


def _quota(text: str | None, what: str, *, size: bool) -> str | None:
    """A quota as the node takes it: decimal digits, ``none`` or None (unchanged)."""
    if text is None or text.lower() == "none":
        return None if text is None else "none"
    try:
        value = parse_size(text) if size else int(text, 10)
    except ValueError as exc:
        raise CliError(f"invalid {what} {text!r}: {exc}") from None
    if value <= 0:
        raise CliError(f"invalid {what} {text!r}: it must be positive (or 'none')")
    return str(value)


def _bucket_quotas(args: argparse.Namespace) -> Remote:
    if args.max_size is None and args.max_objects is None:
        raise CliError("nothing to do: give --max-size, --max-objects or both")
    max_size = _quota(args.max_size, "maximum size", size=True)
    max_objects = _quota(args.max_objects, "maximum number of objects", size=False)
    return _request(SetBucketQuotas(args.bucket, max_size, max_objects))


def _key_delete(args: argparse.Namespace) -> Remote:
    _confirm(args, f"really delete access key {args.pattern}")
    return _request(DeleteKey(args.pattern))


def _key_perm(args: argparse.Namespace, *, allow: bool) -> Remote:
    if not args.create_bucket:
        raise CliError("nothing to do: give --create-bucket")
    return _request(SetKeyCreateBucket(args.pattern, allow))


def _key_import(args: argparse.Namespace) -> Remote:
    _confirm(
        args,
        "import the key: this is for keys made by Garage before (to make a new key, use "
        "`garage key create`)",
    )
    return _request(ImportKey(args.key_id, args.secret_key, args.name))


def _repair(args: argparse.Namespace) -> Remote:
    what = args.what.replace("_", "-")
    _confirm(args, f"really launch the repair {what}")
    request = LaunchRepair(
        what,
        getattr(args, "scrub_command", None),
        getattr(args, "tranquility", None),
        args.all_nodes,
    )
    return _request(request, "launching the repair")


def _check_hash(text: str) -> str:
    if len(text) != _HASH_HEX_LEN or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise CliError(f"invalid block hash {text!r}: expected 64 hex digits")
    return text.lower()


def _block_info(args: argparse.Namespace) -> Remote:
    return _request(GetBlockInfo(_check_hash(args.hash)), "reading the block's references")


def _block_retry(args: argparse.Namespace) -> Remote:
    if args.all == bool(args.blocks):
        raise CliError("give either --all or the hashes of the blocks to retry")
    blocks = tuple(_check_hash(b) for b in args.blocks)
    return _request(RetryBlocks(blocks, args.all))


def _block_purge(args: argparse.Namespace) -> Remote:
    blocks = tuple(_check_hash(b) for b in args.blocks)
    _confirm(args, "really delete every object that uses these blocks")
    return _request(PurgeBlocks(blocks), "purging blocks")


# ------------------------------------------------------------------ running


def _node_id(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``garage node id``: from the configuration, without asking the node."""
    overrides = SecretOverrides(rpc_secret=args.rpc_secret, rpc_secret_file=args.rpc_secret_file)
    config = read_config(args.config, overrides=overrides)
    if config is None:
        raise CliError("no configuration file (/etc/garage.toml does not exist): give one with -c")
    node_id = read_node_id(config.metadata_dir)
    host, port = node_address(config)
    shown = f"[{host}]" if ":" in host else host
    full = f"{node_id.hex()}@{shown}:{port}"
    if args.json:
        print(to_json({"id": node_id.hex(), "address": f"{shown}:{port}"}), file=out)
    else:
        print(full, file=out)
    if not args.quiet:
        if config.rpc_public_addr is None:
            print(
                "WARNING: rpc_public_addr is not set: the address above is how this machine "
                "reaches the node; other nodes may need another one.",
                file=err,
            )
        config_arg = "" if args.config is None else f"-c {args.config} "
        print(
            "To make another node connect to this one, run on it:\n"
            f"    garage {config_arg}node connect {full}",
            file=err,
        )
    return 0


def _quiet_logging(err: TextIO) -> None:
    """The CLI prints its own one-line errors: the libraries' log records (a refused
    handshake, a dropped connection) stay silent unless ``GARAGE_LOG`` asks for them."""
    root = logging.getLogger()
    if root.handlers:
        return  # configured by whoever runs us
    level = os.environ.get("GARAGE_LOG")
    if level:
        logging.basicConfig(
            stream=err,
            level=getattr(logging, level.upper(), logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    else:
        root.addHandler(logging.NullHandler())


def run(
    args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Runs a parsed remote command (or ``node id``); returns the exit status.

    Args:
        args: what ``garage``'s parser made of the command line.
        stdout: where results go (default ``sys.stdout``).
        stderr: where errors and progress go (default ``sys.stderr``).
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    _quiet_logging(err)
    try:
        if args.command == "node" and args.action == "id":
            return _node_id(args, out, err)
        remote = args.build(args)
        overrides = SecretOverrides(
            rpc_secret=args.rpc_secret, rpc_secret_file=args.rpc_secret_file
        )
        target = resolve_target(
            config_path=args.config, rpc_host=args.rpc_host, overrides=overrides
        )

        async def main() -> cluster.Output:
            async with open_client(target, err=err) as client:
                result: cluster.Output = await remote(client)
                return result

        output = anyio.run(main, backend="trio")
    except CliError as exc:
        print(f"garage: {exc}", file=err)
        return EXIT_ERROR
    if args.json:
        print(to_json(output.data), file=out)
    elif output.text:
        print(output.text, file=out)
    return 0
