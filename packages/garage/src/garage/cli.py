"""The ``garage`` command line.

``garage server`` runs a node from a configuration file (``-c``, ``GARAGE_CONFIG_FILE``,
default ``/etc/garage.toml``); ``garage server --single-node`` is the quick start: it
needs nothing prepared, keeps its node in ``--data-dir`` (default ``~/.local/share/garage``)
and prints the S3 endpoint and a ready key. The other commands (status, node, layout,
bucket, key, worker, repair, stats, block, meta) administer a running node over RPC: see
:mod:`garage.cli_admin`. As in Garage, ``-h`` is ``--rpc-host``; help is ``--help``.

The node runs on trio; ``GARAGE_RUNTIME=asyncio`` runs it on asyncio instead (the code is
written against anyio, so both work; ``bench/`` measures them side by side).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import anyio

from garage import cli_admin
from garage_util.config import load_config
from garage_util.errors import ConfigError, GarageError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

#: Exit status when the node cannot start or run (EX_SOFTWARE).
EXIT_SOFTWARE = 70
#: Exit status for a configuration error (EX_CONFIG).
EXIT_CONFIG = 78
#: Exit status for a command line that does not parse (argparse's).
EXIT_USAGE = 2
#: The anyio backends ``garage server`` runs on (``GARAGE_RUNTIME``); the first is the default.
RUNTIMES = ("trio", "asyncio")


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes are one line on stderr, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"garage: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="garage",
        description="Garage in Python: a geo-distributed, S3-compatible object store.",
        epilog="environment: GARAGE_RUNTIME=trio|asyncio selects the event loop of "
        "`garage server` (default trio); GARAGE_LOG sets its log level.",
        add_help=False,  # -h is --rpc-host, as in Garage
    )
    parser.add_argument("--help", action="help", help="show this help message and exit")
    parser.add_argument("--version", action="version", version=f"garage {version('garage')}")
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("GARAGE_CONFIG_FILE"),
        help="configuration file (env GARAGE_CONFIG_FILE; default /etc/garage.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server = sub.add_parser("server", help="run the Garage node")
    server.add_argument(
        "--single-node",
        action="store_true",
        help="start a one-node cluster with a ready key and bucket (quick start)",
    )
    server.add_argument(
        "--data-dir",
        type=Path,
        help="with --single-node: where the node lives (default ~/.local/share/garage)",
    )
    server.add_argument(
        "--s3-api-bind",
        help="with --single-node, on first start: the S3 API address (default 127.0.0.1:3900)",
    )
    server.add_argument(
        "--rpc-bind",
        help="with --single-node, on first start: the RPC address (default 127.0.0.1:3901)",
    )
    server.add_argument(
        "--admin-bind",
        help="with --single-node, on first start: the admin API address (default 127.0.0.1:3903)",
    )
    cli_admin.add_global_options(parser)
    cli_admin.add_commands(sub)
    return parser


def _server(args: argparse.Namespace) -> int:
    # Imported here: the node's modules (the APIs, the model) take a while to import,
    # and the commands that only talk to a node do not need them.
    from garage.server import default_data_dir, prepare_single_node, run_server, setup_logging

    single_dir: Path | None = None
    if args.single_node and args.config is None:
        single_dir = (args.data_dir or default_data_dir()).expanduser().absolute()
        path = prepare_single_node(
            single_dir,
            s3_api_bind=args.s3_api_bind,
            rpc_bind=args.rpc_bind,
            admin_bind=args.admin_bind,
        )
    else:
        path = Path(args.config or "/etc/garage.toml")
        if args.single_node:
            single_dir = (args.data_dir or path.parent).expanduser().absolute()
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"garage: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    runtime = os.environ.get("GARAGE_RUNTIME") or RUNTIMES[0]
    if runtime not in RUNTIMES:
        print(f"garage: GARAGE_RUNTIME={runtime!r}: expected one of {RUNTIMES}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging()
    try:
        serve = functools.partial(run_server, config, single_node_dir=single_dir)
        anyio.run(serve, backend=runtime)
    except KeyboardInterrupt:
        return 130
    except (OSError, GarageError) as exc:
        print(f"garage: {exc}", file=sys.stderr)
        return EXIT_SOFTWARE
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``garage`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "server":
        return _server(args)
    return cli_admin.run(args)


if __name__ == "__main__":
    sys.exit(main())
