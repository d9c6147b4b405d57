"""The ``garage`` command line.

Today it knows ``--version`` and ``server``. The node itself (RPC, tables, S3 API) is
built by later issues; until then ``garage server`` checks its configuration, if given one,
and says plainly that it cannot serve yet, with a non-zero exit status so that no script
mistakes it for a running node.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from garage_util.config import load_config
from garage_util.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

#: Exit status when the command is known but its feature is not built yet (EX_UNAVAILABLE).
EXIT_NOT_BUILT = 69
#: Exit status for a configuration error (EX_CONFIG).
EXIT_CONFIG = 78


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="garage",
        description="Garage in Python: a geo-distributed, S3-compatible object store.",
    )
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
        help="start a one-node cluster with a ready key (quick start)",
    )
    return parser


def _server(args: argparse.Namespace) -> int:
    if args.config is not None or not args.single_node:
        path = Path(args.config or "/etc/garage.toml")
        try:
            load_config(path)
        except ConfigError as exc:
            print(f"garage: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"garage: configuration {path} is valid.", file=sys.stderr)
    print(
        "garage server: the node is not built yet. This release contains the foundation "
        "(garage_util), RPC (garage_rpc) and table (garage_table) layers; the model and S3 "
        "layers and the node itself land with issues #5-#7.",
        file=sys.stderr,
    )
    return EXIT_NOT_BUILT


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``garage`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "server":
        return _server(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse refuses others


if __name__ == "__main__":
    sys.exit(main())
