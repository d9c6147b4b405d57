"""``garage server`` with shortened background timings, for tests/garage/test_metrics_activity.

Runs the real server (``garage -c CONFIG server``: the console script's ``main``, then
:func:`garage.server.run_server` with its S3 and admin APIs, ``/metrics`` and graceful
stop on SIGTERM), except that the node is built with :data:`TIMINGS`: Garage's own
intervals (a full sync every 10 minutes, tombstones kept 24 hours before GC) are too long
for a test to see anti-entropy and GC happen. The timings are those of
tests/cluster/model_node.py.

Usage (from the repository root): python -m tests.garage.metrics_node -c CONFIG server
"""

from __future__ import annotations

import functools
import sys

from tests.cluster.rpc_node import TEST_PEERING

from garage import cli, server
from garage_model import Garage, GarageTimings
from garage_table import TableTimings

TIMINGS = GarageTimings(
    tables=TableTimings(
        sync_interval_s=2.0,
        sync_first_delay_s=0.5,
        gc_delay_s=1.0,
        gc_retry_delay_s=0.5,
    ),
    # A stopped peer is noticed, and a restarted one reconnected, within a second or two.
    peering=TEST_PEERING,
    status_interval_s=0.5,
    block_gc_delay_ms=1000,
    block_incref_check_delay_ms=1000,
    resync_retry_delay_ms=500,
    resync_max_idle_s=0.5,
)

if __name__ == "__main__":
    # run_server builds the node with ``Garage(config)``: give it these timings (a test
    # hook on the module global, hence the ignore: a partial is not the class).
    server.Garage = functools.partial(Garage, timings=TIMINGS)  # type: ignore[attr-defined,assignment]
    sys.exit(cli.main(sys.argv[1:]))
