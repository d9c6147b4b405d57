"""A storage node for fault runs: ``garage server`` with the test timings.

``python -m faults._node CONFIG`` builds the same parts as ``garage server`` (the node, the
admin RPC handler the CLI talks to, and the S3 API), but passes :data:`FAULT_TIMINGS` to
:class:`garage_model.Garage`, so that failure detection, anti-entropy, GC and resync run in
seconds rather than Garage's minutes and hours (Garage's own Jepsen harness shortens them in
the same spirit, script/jepsen.garage). Everything else (quorums, consistency mode,
``rpc_bind_outgoing``, block size) comes from the configuration file, as for a real node.

With ``FAULTS_CLOCK_FILE`` set, the node's wall clock follows the offset in that file
(:mod:`faults._clockskew`). It stops gracefully on SIGINT or SIGTERM, like ``garage
server``; fault runs mostly end it with SIGKILL (the crash case) and start it again on the
same directories.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Final

from faults._clockskew import install as _install_clock_skew

# The clock hook must wrap time.time_ns before Garage's modules are imported.
if os.environ.get("FAULTS_CLOCK_FILE"):
    _install_clock_skew(Path(os.environ["FAULTS_CLOCK_FILE"]))

# Imported after the clock hook, which must wrap time.time_ns first.
import anyio

from garage import admin_rpc
from garage.server import setup_logging
from garage_api.http import serve
from garage_api.s3 import S3Api
from garage_model import Garage, GarageTimings
from garage_rpc.peering import PeeringConfig
from garage_rpc.rpc_helper import RequestStrategy
from garage_table import TableTimings
from garage_util.config import load_config

logger = logging.getLogger("faults.node")

#: Background timings of fault-run nodes (fault-testing.md §3.2: "anti-entropy and resync
#: every 10-30 s, ping and failure detection a few seconds, RPC timeout 5 s").
FAULT_TIMINGS: Final = GarageTimings(
    tables=TableTimings(
        # 5 s: below the clients' 10 s timeout, so a lost quorum answers 5xx, not a hang.
        strategy=RequestStrategy(timeout_s=5.0),
        # Full anti-entropy every 15 s: several passes within a run's final 120 s window.
        sync_interval_s=15.0,
        sync_first_delay_s=3.0,
        # Tombstones are collected after 10 s, so runs exercise GC racing with resync
        # (Garage keeps them 24 h; the GC protocol must be safe for any delay).
        gc_delay_s=10.0,
        gc_retry_delay_s=2.0,
    ),
    peering=PeeringConfig(
        # A peer is declared down after ~3 s without answers (1 s pings, 2 misses), and a
        # lost peer is retried every second forever (partitions heal).
        ping_interval_s=1.0,
        ping_timeout_s=2.0,
        max_failed_pings=2,
        retry_interval_s=1.0,
        max_retries=1_000_000,
        loop_interval_s=0.2,
    ),
    status_interval_s=1.0,
    # Unreferenced blocks go after 10 s (Garage: 10 min): deleted objects free their blocks
    # within a run, which the convergence check then sees.
    block_gc_delay_ms=10_000,
    block_incref_check_delay_ms=5_000,
    resync_retry_delay_ms=1_000,
    resync_max_idle_s=1.0,
    scrub_checkpoint_interval_ms=1_000,
)


async def run_node(config_path: Path) -> None:
    """Runs the node of ``config_path`` until SIGINT or SIGTERM."""
    config = load_config(config_path)
    garage = await anyio.to_thread.run_sync(
        functools.partial(Garage, config, timings=FAULT_TIMINGS)
    )
    admin_rpc.register(garage)
    api_stop = anyio.Event()
    async with anyio.create_task_group() as node:
        rpc_addr = await node.start(garage.run)
        logger.info("node %s: RPC on %s:%s", garage.node_id.hex()[:16], *rpc_addr)
        async with anyio.create_task_group() as apis:
            bind = config.s3_api.api_bind_addr
            if bind is not None:
                s3 = functools.partial(serve, S3Api(garage).handle, bind, shutdown=api_stop)
                logger.info("S3 API on %s", await apis.start(s3))
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            api_stop.set()
        node.cancel_scope.cancel()


def main(argv: list[str]) -> int:
    """``python -m faults._node CONFIG``: the exit status."""
    if len(argv) != 1:
        print("usage: python -m faults._node CONFIG", file=sys.stderr)
        return 2
    setup_logging()
    anyio.run(run_node, Path(argv[0]), backend="trio")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
