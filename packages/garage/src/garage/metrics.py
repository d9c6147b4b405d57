"""The node's Prometheus metrics (Garage: src/garage/metrics.rs, the ``metrics`` of each crate).

Theory of operation
-------------------
:class:`NodeMetrics` owns one ``prometheus_client`` registry per node. Two kinds of
metrics live in it:

- **API requests** are recorded as they happen, with ``prometheus_client`` types: the API
  servers are wrapped with :meth:`NodeMetrics.instrument`, which counts each request by
  API, endpoint (``Response.endpoint``, the routed operation, or else the HTTP method) and
  status, and times it up to its response headers (a body may stream for long after).
- **Everything else** is read at scrape time by a custom collector from the plain
  counters the lower layers keep (``statistics()`` snapshots of the transport, tables,
  block manager and resync queue) and from the node's state (cluster health, layout,
  queue lengths, free disk space). The lower layers never import ``prometheus_client``
  (embedders of ``garage_table`` do not get it) and pay one attribute increment per
  operation.

Some values cost a blocking read: the free space of the data and metadata filesystems
(``statvfs``) and the lengths of the resync, Merkle and GC queues (sqlite counts rows).
:meth:`NodeMetrics.scrape` reads those in a worker thread, then renders on the event loop;
:meth:`NodeMetrics.render` does everything in the calling thread (for sync callers).
Both must run in the node's event loop thread or with it stopped, as they read its state.

Names follow the Prometheus conventions: counters end in ``_total``, and units are in the
name, in base units (``_bytes``, ``_seconds``). The ``*_created`` series that
``prometheus_client`` adds to its counters and histograms are not exported (they double
the number of series only to tell when the process started); they are filtered out of
this registry's exposition only, so other registries of the process keep them
(``prometheus_client.disable_created_metrics()`` would switch them off process-wide).

Disk space comes in two families that must not be mixed: ``garage_local_disk_*{volume}``
counts each filesystem once (data directories on one disk share its space, so summing
them would count it twice), and ``garage_data_dir_*{path}`` has one sample per configured
data directory, each reporting the filesystem that holds it (so it is the one to alert on
per drive, and the one not to ``sum()`` when directories share a disk).

Exported metrics (counters end in ``_total``, durations are in seconds):

=============================================  ===============================================
``garage_build_info{version}``                 1, with the running version
``garage_replication_factor``                  the ``replication_factor`` setting
``garage_local_disk_avail_bytes{volume}``      free bytes of ``data`` and ``metadata`` disks
``garage_local_disk_total_bytes{volume}``      their size (data: distinct filesystems summed)
``garage_data_dir_avail_bytes{path}``          free bytes of the filesystem of each data
``garage_data_dir_total_bytes{path}``          directory, and its size
``api_requests_total{api,endpoint,status}``    API requests answered (api: s3, k2v, web...)
``api_errors_total{api,endpoint,status}``      those answered with a status >= 400
``api_request_duration_seconds{api,endpoint}`` histogram of the time to the response headers
``rpc_requests_total{endpoint,result}``        RPCs made (ok, error, net_error, timeout,
                                               cancelled)
``rpc_duration_seconds{endpoint}``             summary of their durations (not cancelled)
``rpc_timeouts_total{endpoint}``               RPCs that timed out
``rpc_netapp_errors_total{endpoint}``          RPCs the transport failed (peer down...)
``rpc_garage_errors_total{endpoint}``          RPCs whose handler failed
``rpc_connections``, ``rpc_calls_in_flight``,  open connections, calls waiting for an
``rpc_requests_in_flight``                     answer, requests being served
``cluster_healthy``, ``cluster_available``     1 when healthy / when every partition has a
                                               write quorum of nodes up, else 0
``cluster_known_nodes``,                       nodes seen, and up (ourself included)
``cluster_connected_nodes``
``cluster_storage_nodes``,                     storage nodes of the live layout versions, and
``cluster_storage_nodes_ok``                   those up
``cluster_partitions``,                        partitions (256), with a quorum up, with all
``cluster_partitions_quorum``,                 their nodes up
``cluster_partitions_all_ok``
``cluster_layout_version``                     the current layout version
``table_get_request_total{table_name}``,       quorum reads and writes of each table, and
``table_put_request_total{table_name}``,       summaries of their durations
``table_{get,put}_request_duration_seconds``
``table_internal_update_total{table_name}``,   local entries changed, deleted
``table_internal_delete_total{table_name}``
``table_sync_items_sent_total{table_name}``,   anti-entropy items pushed to / merged from
``table_sync_items_received_total{...}``       peers
``table_sync_full_syncs_total{table_name}``    full syncs completed
``table_gc_collected_total{table_name}``,      tombstones collected, stale GC entries
``table_gc_dropped_total{table_name}``,        dropped, node groups that did not all
``table_gc_failed_total{table_name}``          acknowledge (retried)
``table_gc_todo_queue_length{table_name}``     tombstones waiting for GC
``table_merkle_updater_todo_queue_length{..}`` changes waiting for the Merkle updater
``block_bytes_read_total``,                    bytes of block files read / written, and
``block_bytes_written_total``,                 summaries of the time per block
``block_{read,write}_duration_seconds``
``block_delete_total``,                        blocks deleted, corrupt copies found
``block_corruption_total``
``block_ram_buffer_free_bytes``                bytes left in the RAM budget of block sends
``block_compression_level``                    the zstd level (absent when disabled)
``block_resync_queue_length``                  blocks queued for a resync
``block_resync_errored_blocks``                blocks whose last resync failed (should be 0)
``block_resyncs_total``,                       resyncs run, failed, and a summary of their
``block_resync_errors_total``,                 durations
``block_resync_duration_seconds``
=============================================  ===============================================
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Final, final

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from garage_rpc.system import HealthStatus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from prometheus_client.metrics_core import Metric

    from garage_api.http import Handler, Request, Response
    from garage_model import Garage

__all__ = ["CONTENT_TYPE", "NodeMetrics"]

#: The media type of :meth:`NodeMetrics.render`'s text.
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
#: Responses with this status or above count as errors (Garage: ``api_*_error_counter``).
_ERROR_STATUS: Final = 400
#: The block manager counts its RAM budget in KiB permits (Garage: ``buffer_kb_semaphore``).
_KIB: Final = 1024


class NodeMetrics:
    """The metrics of one node (see the module docstring for the list).

    Args:
        garage: the node whose counters are exported.
    """

    def __init__(self, garage: Garage) -> None:
        self._garage = garage
        self.registry = CollectorRegistry(auto_describe=True)
        """The node's registry (the API metrics and the node collector); :meth:`render`
        exports it without the ``*_created`` series."""
        self._requests = Counter(
            "api_requests",
            "API requests answered, by API, endpoint and status.",
            ["api", "endpoint", "status"],
            registry=self.registry,
        )
        self._errors = Counter(
            "api_errors",
            "API requests answered with an error status (>= 400), by API, endpoint and status.",
            ["api", "endpoint", "status"],
            registry=self.registry,
        )
        self._durations = Histogram(
            "api_request_duration_seconds",
            "Time to answer an API request (to the response headers), by API and endpoint.",
            ["api", "endpoint"],
            registry=self.registry,
        )
        self._collector = _NodeCollector(garage)
        self.registry.register(self._collector)
        self._exposed = _WithoutCreated(self.registry)

    def instrument(self, api: str, handler: Handler) -> Handler:
        """``handler``, counting and timing each request under the API name ``api``.

        The endpoint label is the response's ``endpoint`` (the routed operation), or the
        request's method when the API did not route it. A handler that raises is counted
        as a 500 (the HTTP layer answers so) and the exception propagates.
        """

        async def instrumented(request: Request) -> Response:
            start = anyio.current_time()
            try:
                response = await handler(request)
            except Exception:
                self._record(api, request.method, 500, start)
                raise
            self._record(api, response.endpoint or request.method, response.status, start)
            return response

        return instrumented

    def _record(self, api: str, endpoint: str, status: int, start: float) -> None:
        elapsed = anyio.current_time() - start
        self._requests.labels(api, endpoint, str(status)).inc()
        if status >= _ERROR_STATUS:
            self._errors.labels(api, endpoint, str(status)).inc()
        self._durations.labels(api, endpoint).observe(elapsed)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (:data:`CONTENT_TYPE`).

        Blocks briefly (disk space, queue lengths): async code should prefer
        :meth:`scrape`.
        """
        return generate_latest(self._exposed)

    async def scrape(self) -> bytes:
        """:meth:`render`, with its blocking reads done in a worker thread."""
        probe = await anyio.to_thread.run_sync(_probe, self._garage)
        # No checkpoint from here to the end: no other scrape can see this probe.
        self._collector.prefetched = probe
        try:
            return self.render()
        finally:
            self._collector.prefetched = None


@final
class _WithoutCreated(Collector):
    """What ``registry`` collects, less the ``*_created`` samples of its metrics.

    A per-registry equivalent of ``prometheus_client.disable_created_metrics()``, which
    flips a process-wide switch (it would change the exposition of every other registry
    of an embedding application).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            created = metric.name + "_created"
            # The collected Metric objects are built afresh at each collect: ours to edit.
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


# ---------------------------------------------------------------------- blocking reads


@dataclass(frozen=True, slots=True)
class _Probe:
    """What costs a blocking read: disk space and queue lengths (sqlite counts rows).

    Attributes:
        disks: ``(volume, avail bytes, total bytes)`` of ``data`` and ``metadata``.
        data_dirs: ``(path, avail bytes, total bytes)`` of each readable data directory's
            filesystem, in configuration order.
        resync_queue: blocks queued for a resync.
        resync_errors: blocks whose last resync failed.
        merkle_todo: per table name, changes waiting for the Merkle updater.
        gc_todo: per table name, tombstones waiting for GC.
    """

    disks: tuple[tuple[str, int, int], ...]
    data_dirs: tuple[tuple[str, int, int], ...]
    resync_queue: int
    resync_errors: int
    merkle_todo: tuple[tuple[str, int], ...]
    gc_todo: tuple[tuple[str, int], ...]


def _probe(garage: Garage) -> _Probe:
    """Reads the blocking values (run it in a worker thread from async code)."""
    config = garage.config
    data_dirs = [(d.path, _disk_usage(d.path)) for d in config.data_dir]
    disks = []
    data = _distinct_sum([usage for _, usage in data_dirs])
    if data is not None:
        disks.append(("data", *data))
    meta = _distinct_sum([_disk_usage(config.metadata_dir)])
    if meta is not None:
        disks.append(("metadata", *meta))
    resync = garage.block_manager.resync
    tables = [rt.data for rt in garage.tables()]
    return _Probe(
        disks=tuple(disks),
        data_dirs=tuple(
            (str(path), usage.avail, usage.total) for path, usage in data_dirs if usage is not None
        ),
        resync_queue=resync.queue_len(),
        resync_errors=resync.errors_len(),
        merkle_todo=tuple((t.name, t.merkle_updater.todo_len()) for t in tables),
        gc_todo=tuple((t.name, t.gc_todo_len()) for t in tables),
    )


@dataclass(frozen=True, slots=True)
class _Usage:
    """The space of the filesystem holding a path.

    Attributes:
        device: its ``st_dev``, which tells paths on one filesystem.
        avail: bytes free for unprivileged users (``statvfs`` ``f_bavail``).
        total: its size in bytes.
    """

    device: int
    avail: int
    total: int


def _disk_usage(path: Path) -> _Usage | None:
    """The space of the filesystem holding ``path``; None if it cannot be read (missing
    or unreadable: the node reports that elsewhere)."""
    try:
        device = os.stat(path).st_dev
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return _Usage(device, usage.free, usage.total)


def _distinct_sum(usages: list[_Usage | None]) -> tuple[int, int] | None:
    """Free and total bytes of the filesystems of ``usages``, each counted once (data
    directories on one disk share its space); None when none could be read."""
    seen: set[int] = set()
    avail = total = 0
    for usage in usages:
        if usage is None or usage.device in seen:
            continue
        seen.add(usage.device)
        avail += usage.avail
        total += usage.total
    return (avail, total) if seen else None


# ---------------------------------------------------------------------- the collector


@final
class _NodeCollector(Collector):
    """Exports the node's own counters and state at each scrape.

    ``describe()`` (inherited) reports no names, so that registering it does not collect;
    :meth:`collect` reads :attr:`prefetched` if :meth:`NodeMetrics.scrape` set it, else
    does the blocking reads itself.
    """

    def __init__(self, garage: Garage) -> None:
        self._garage = garage
        self.prefetched: _Probe | None = None

    def collect(self) -> Iterator[Metric]:
        garage = self._garage
        probe = self.prefetched if self.prefetched is not None else _probe(garage)
        yield from _system_metrics(garage, probe)
        yield from _cluster_metrics(garage)
        yield from _rpc_metrics(garage)
        yield from _table_metrics(garage, probe)
        yield from _block_metrics(garage, probe)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _system_metrics(garage: Garage, probe: _Probe) -> Iterator[Metric]:
    info = GaugeMetricFamily("garage_build_info", "The Garage version running.", labels=["version"])
    info.add_metric([version("garage")], 1)
    yield info
    yield _gauge(
        "garage_replication_factor",
        "The replication_factor setting.",
        garage.config.replication_factor,
    )
    avail = GaugeMetricFamily(
        "garage_local_disk_avail_bytes", "Free bytes of the node's disks.", labels=["volume"]
    )
    total = GaugeMetricFamily(
        "garage_local_disk_total_bytes", "Size of the node's disks in bytes.", labels=["volume"]
    )
    for volume, free_bytes, total_bytes in probe.disks:
        avail.add_metric([volume], free_bytes)
        total.add_metric([volume], total_bytes)
    yield avail
    yield total
    # One sample per data directory, apart from the deduplicated ``volume="data"`` sum (a
    # family holding both would double count under ``sum()``).
    dir_avail = GaugeMetricFamily(
        "garage_data_dir_avail_bytes",
        "Free bytes of the filesystem of each data directory (shared by directories on one "
        "filesystem: do not sum).",
        labels=["path"],
    )
    dir_total = GaugeMetricFamily(
        "garage_data_dir_total_bytes",
        "Size in bytes of the filesystem of each data directory.",
        labels=["path"],
    )
    for path, free_bytes, total_bytes in probe.data_dirs:
        dir_avail.add_metric([path], free_bytes)
        dir_total.add_metric([path], total_bytes)
    yield dir_avail
    yield dir_total


def _cluster_metrics(garage: Garage) -> Iterator[Metric]:
    health = garage.system.health()
    peers = garage.peering.peers()
    yield _gauge(
        "cluster_healthy",
        "1 when every storage node is up and every partition has all its nodes up.",
        int(health.status is HealthStatus.HEALTHY),
    )
    yield _gauge(
        "cluster_available",
        "1 when every partition has a write quorum of nodes up (all requests can be served).",
        int(health.status is not HealthStatus.UNAVAILABLE),
    )
    yield _gauge("cluster_known_nodes", "Nodes seen at least once (ourself included).", len(peers))
    yield _gauge(
        "cluster_connected_nodes",
        "Nodes up now (ourself included).",
        sum(1 for p in peers if p.is_up),
    )
    yield _gauge(
        "cluster_storage_nodes", "Storage nodes of the live layout versions.", health.storage_nodes
    )
    yield _gauge("cluster_storage_nodes_ok", "Storage nodes up.", health.storage_nodes_up)
    yield _gauge("cluster_partitions", "Partitions of the layout.", health.partitions)
    yield _gauge(
        "cluster_partitions_quorum",
        "Partitions with a write quorum of nodes up in each live layout version.",
        health.partitions_quorum,
    )
    yield _gauge(
        "cluster_partitions_all_ok", "Partitions with all their nodes up.", health.partitions_all_ok
    )
    yield _gauge(
        "cluster_layout_version",
        "The current cluster layout version.",
        garage.layout.helper.current.version,
    )


def _rpc_metrics(garage: Garage) -> Iterator[Metric]:
    labels = ["endpoint"]
    requests = CounterMetricFamily(
        "rpc_requests", "RPCs made, by endpoint and result.", labels=["endpoint", "result"]
    )
    durations = SummaryMetricFamily(
        "rpc_duration_seconds", "Time to the answer (or failure) of RPCs.", labels=labels
    )
    timeouts = CounterMetricFamily("rpc_timeouts", "RPCs that timed out.", labels=labels)
    net_errors = CounterMetricFamily(
        "rpc_netapp_errors", "RPCs failed by the transport (peer down...).", labels=labels
    )
    errors = CounterMetricFamily(
        "rpc_garage_errors", "RPCs whose handler failed on the called node.", labels=labels
    )
    for path, stats in sorted(garage.netapp.call_statistics().items()):
        results = (
            ("ok", stats.ok),
            ("error", stats.errors),
            ("net_error", stats.net_errors),
            ("timeout", stats.timeouts),
            ("cancelled", stats.cancelled),
        )
        for result, count in results:
            requests.add_metric([path, result], count)
        durations.add_metric([path], stats.ended, stats.duration_s)
        timeouts.add_metric([path], stats.timeouts)
        net_errors.add_metric([path], stats.net_errors)
        errors.add_metric([path], stats.errors)
    yield from (requests, durations, timeouts, net_errors, errors)
    transport = garage.netapp.statistics()
    yield _gauge("rpc_connections", "Open connections to peers.", transport.connections)
    yield _gauge("rpc_calls_in_flight", "RPCs made waiting for their answer.", transport.calls)
    yield _gauge("rpc_requests_in_flight", "Peers' RPCs being served.", transport.requests)


def _table_metrics(garage: Garage, probe: _Probe) -> Iterator[Metric]:
    labels = ["table_name"]

    def counter(name: str, doc: str) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=labels)

    gets = counter("table_get_request", "Quorum reads (get, get_range) of the table.")
    get_s = SummaryMetricFamily(
        "table_get_request_duration_seconds", "Duration of the table's reads.", labels=labels
    )
    puts = counter("table_put_request", "Quorum writes (insert, insert_many) of the table.")
    put_s = SummaryMetricFamily(
        "table_put_request_duration_seconds", "Duration of the table's writes.", labels=labels
    )
    updates = counter("table_internal_update", "Local entries created or changed.")
    deletes = counter("table_internal_delete", "Local entries deleted (GC, offload).")
    sent = counter("table_sync_items_sent", "Items pushed to peers by anti-entropy.")
    received = counter("table_sync_items_received", "Items received from peers' anti-entropy.")
    syncs = counter("table_sync_full_syncs", "Full syncs of the table completed.")
    collected = counter("table_gc_collected", "Tombstones collected on every replica.")
    dropped = counter("table_gc_dropped", "Stale GC entries dropped (tombstone superseded).")
    failed = counter("table_gc_failed", "GC node groups that did not all acknowledge.")
    for rt in garage.tables():
        name = [rt.data.name]
        requests = rt.table.statistics()
        gets.add_metric(name, requests.get_requests)
        get_s.add_metric(name, requests.get_requests, requests.get_duration_s)
        puts.add_metric(name, requests.put_requests)
        put_s.add_metric(name, requests.put_requests, requests.put_duration_s)
        data = rt.data.statistics()
        updates.add_metric(name, data.internal_updates)
        deletes.add_metric(name, data.internal_deletes)
        sync = rt.syncer.statistics()
        sent.add_metric(name, sync.items_sent)
        received.add_metric(name, sync.items_received)
        syncs.add_metric(name, rt.sync_worker.syncs_done)
        gc = rt.gc.statistics()
        collected.add_metric(name, gc.collected)
        dropped.add_metric(name, gc.dropped)
        failed.add_metric(name, gc.failed_groups)
    yield from (gets, get_s, puts, put_s, updates, deletes, sent, received, syncs)
    yield from (collected, dropped, failed)
    gc_todo = GaugeMetricFamily(
        "table_gc_todo_queue_length", "Tombstones waiting for GC.", labels=labels
    )
    for table, length in probe.gc_todo:
        gc_todo.add_metric([table], length)
    yield gc_todo
    merkle = GaugeMetricFamily(
        "table_merkle_updater_todo_queue_length",
        "Changes waiting for the Merkle updater (should fall to zero quickly).",
        labels=labels,
    )
    for table, length in probe.merkle_todo:
        merkle.add_metric([table], length)
    yield merkle


def _block_metrics(garage: Garage, probe: _Probe) -> Iterator[Metric]:
    manager = garage.block_manager
    stats = manager.statistics()
    yield CounterMetricFamily(
        "block_bytes_read", "Bytes of block files read from disk.", value=stats.bytes_read
    )
    yield SummaryMetricFamily(
        "block_read_duration_seconds",
        "Time to read (and verify) a block file.",
        count_value=stats.reads,
        sum_value=stats.read_duration_s,
    )
    yield CounterMetricFamily(
        "block_bytes_written", "Bytes of block files written to disk.", value=stats.bytes_written
    )
    yield SummaryMetricFamily(
        "block_write_duration_seconds",
        "Time to write a block file.",
        count_value=stats.writes,
        sum_value=stats.write_duration_s,
    )
    yield CounterMetricFamily("block_delete", "Blocks deleted.", value=stats.deleted)
    yield CounterMetricFamily(
        "block_corruption", "Corrupt block copies found on read.", value=stats.corruptions
    )
    yield _gauge(
        "block_ram_buffer_free_bytes",
        "Bytes free for buffering block sends; at 0, writers wait (backpressure).",
        stats.ram_buffer_free_kb * _KIB,
    )
    level = garage.config.compression_level
    if level is not None:
        yield _gauge("block_compression_level", "The zstd level of new blocks.", level)
    yield _gauge("block_resync_queue_length", "Blocks queued for a resync.", probe.resync_queue)
    yield _gauge(
        "block_resync_errored_blocks",
        "Blocks whose last resync failed (should fall back to 0 quickly).",
        probe.resync_errors,
    )
    resync = manager.resync.statistics()
    yield CounterMetricFamily("block_resyncs", "Block resyncs run.", value=resync.resyncs)
    yield CounterMetricFamily(
        "block_resync_errors", "Block resyncs that failed.", value=resync.errors
    )
    yield SummaryMetricFamily(
        "block_resync_duration_seconds",
        "Duration of block resyncs.",
        count_value=resync.resyncs,
        sum_value=resync.duration_s,
    )
