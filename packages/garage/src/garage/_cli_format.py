"""What the ``garage`` CLI prints: tables for people, JSON for scripts.

Pure functions from answers (:mod:`garage.admin_rpc` values, layout values) to text.
People get Garage's layouts (Garage: src/garage/cli/util.rs): aligned columns, sizes in
decimal units (``1.5 GB``), times in UTC, ids shortened to 16 hex digits where a table
would otherwise be unreadable (commands accept any unique prefix). Scripts get
:func:`to_json`: every field, full ids, sizes in bytes and times in milliseconds since
the epoch.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import TYPE_CHECKING, Final

from garage_rpc.layout import format_bytes
from garage_util.clock import msec_to_rfc3339
from garage_util.data import FixedBytes32

from .admin_rpc import (
    BlockDetails,
    BlockErrors,
    BucketDetails,
    BucketListing,
    Done,
    KeyDetails,
    KeyListing,
    NodeStats,
    PerNode,
    WorkerDescription,
    WorkerDetails,
    WorkerListing,
    WorkerVars,
)

if TYPE_CHECKING:
    from .admin_rpc import AdminResponse

__all__ = [
    "SHORT_ID",
    "format_table",
    "format_time",
    "render",
    "short",
    "to_json",
]

#: Hex digits of an id shown in tables (Garage shows 16).
SHORT_ID: Final = 16


def format_table(rows: list[list[str]], *, indent: str = "") -> str:
    """Aligns ``rows`` in columns separated by two spaces (the first row is the header).

    Trailing blanks are dropped; an empty list gives an empty string.
    """
    if not rows:
        return ""
    n = max(len(r) for r in rows)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(n)]
    lines = [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
        for r in rows
    ]
    return "\n".join(lines)


def short(hex_id: str) -> str:
    """The first 16 hex digits of an id."""
    return hex_id[:SHORT_ID]


def format_time(ms: int | None) -> str:
    """A time in ms as ``2024-05-01 12:00:00 UTC``; ``never`` for None or 0."""
    if not ms:
        return "never"
    text = msec_to_rfc3339(ms)
    return f"{text[:10]} {text[11:19]} UTC"


def _flags(read: bool, write: bool, owner: bool) -> str:
    """``RWO`` with dashes for missing rights, as Garage prints permissions."""
    return ("R" if read else "-") + ("W" if write else "-") + ("O" if owner else "-")


def to_json(value: object) -> str:
    """``value`` as indented JSON: dataclasses as objects, ids as hex strings."""
    return json.dumps(_jsonable(value), indent=2, sort_keys=False)


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, FixedBytes32 | bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    return value


# ------------------------------------------------------------------ answers


def render(response: AdminResponse) -> str:
    """The text printed for an admin answer (without a final newline)."""
    match response:
        case Done(message=message):
            return message
        case BucketListing():
            return _bucket_list(response)
        case BucketDetails():
            return _bucket_info(response)
        case KeyListing(keys=keys):
            rows = [["Key ID", "Name"]] + [[k.key_id, k.name] for k in keys]
            return format_table(rows) if keys else "No access keys."
        case KeyDetails():
            return _key_info(response)
        case WorkerListing(workers=workers):
            return _worker_list(workers)
        case WorkerDetails(worker=worker):
            return _worker_info(worker)
        case WorkerVars(vars=values):
            rows = [[short(v.node), v.name, v.value] for v in values]
            return format_table(rows)
        case NodeStats():
            return _stats(response)
        case BlockErrors(errors=errors):
            return _block_errors(response) if errors else "No block has a resync error."
        case BlockDetails():
            return _block_info(response)
        case PerNode(answers=answers):
            parts = []
            for a in answers:
                body = f"error: {a.error}" if a.answer is None else render(a.answer)
                parts.append(f"==== NODE {a.node} ====\n{body}")
            return "\n\n".join(parts)
    return repr(response)


def _bucket_list(listing: BucketListing) -> str:
    if not listing.buckets:
        return "No buckets."
    rows = [["ID", "Created", "Global aliases", "Local aliases"]]
    for b in listing.buckets:
        local = ", ".join(f"{a.alias} (key {a.key_id})" for a in b.local_aliases)
        rows.append(
            [short(b.id), format_time(b.created_ms)[:10], ", ".join(b.global_aliases), local]
        )
    return format_table(rows)


def _bucket_info(b: BucketDetails) -> str:
    lines = [
        f"Bucket:          {b.id}",
        f"Created:         {format_time(b.created_ms)}",
        "",
        f"Size:            {format_bytes(b.bytes)} ({b.bytes} B)",
        f"Objects:         {b.objects}",
        f"Unfinished uploads (multipart and non-multipart): {b.unfinished_uploads}",
        f"Unfinished multipart uploads: {b.mpu_uploads}",
        f"Size of unfinished multipart uploads: {format_bytes(b.mpu_bytes)} ({b.mpu_bytes} B)",
        "",
        f"Website access:  {str(b.website).lower()}",
    ]
    if b.website:
        lines.append(f"  index document: {b.index_document}")
        lines.append(f"  error document: {b.error_document or '(none)'}")
    if b.max_size is not None or b.max_objects is not None:
        lines.append("")
        lines.append("Quotas:")
        if b.max_size is not None:
            lines.append(f"  maximum size:    {format_bytes(b.max_size)} ({b.max_size} B)")
        if b.max_objects is not None:
            lines.append(f"  maximum objects: {b.max_objects}")
    lines += ["", "Global aliases:"]
    lines += [f"  {a}" for a in b.global_aliases] or ["  (none)"]
    if b.local_aliases:
        lines += ["", "Key-specific aliases:"]
        lines.append(format_table([[a.key_id, a.alias] for a in b.local_aliases], indent="  "))
    lines += ["", "Authorized keys:"]
    keys = [k for k in b.keys if k.read or k.write or k.owner]
    if keys:
        rows = [[_flags(k.read, k.write, k.owner), k.key_id, k.name] for k in keys]
        lines.append(format_table(rows, indent="  "))
    else:
        lines.append("  (none)")
    return "\n".join(lines)


def _key_info(k: KeyDetails) -> str:
    secret = k.secret_key if k.secret_key is not None else "(redacted)"
    lines = [
        f"Key name: {k.name}",
        f"Key ID: {k.key_id}",
        f"Secret key: {secret}",
        f"Can create buckets: {str(k.allow_create_bucket).lower()}",
    ]
    local = [(a, b) for b in k.buckets for a in b.local_aliases]
    if local:
        lines += ["", "Key-specific bucket aliases:"]
        lines.append(format_table([[a, short(b.bucket_id)] for a, b in local], indent="  "))
    lines += ["", "Authorized buckets:"]
    allowed = [b for b in k.buckets if b.read or b.write or b.owner]
    if allowed:
        rows = [
            [
                _flags(b.read, b.write, b.owner),
                ", ".join(b.global_aliases),
                ", ".join(b.local_aliases),
                short(b.bucket_id),
            ]
            for b in allowed
        ]
        lines.append(format_table(rows, indent="  "))
    else:
        lines.append("  (none)")
    return "\n".join(lines)


def _worker_list(workers: tuple[WorkerDescription, ...]) -> str:
    rows = [["TID", "State", "Name", "Tranq", "Done", "Queue", "Errors", "Consec", "Last error"]]
    rows += [
        [
            str(w.tid),
            w.state.capitalize(),
            w.name,
            "-" if w.tranquility is None else str(w.tranquility),
            w.progress or "-",
            "-" if w.queue_length is None else str(w.queue_length),
            str(w.errors) if not w.persistent_errors else f"{w.errors}/{w.persistent_errors}",
            str(w.consecutive_errors),
            "-" if w.last_error_ms is None else format_time(w.last_error_ms),
        ]
        for w in workers
    ]
    return format_table(rows)


def _worker_info(w: WorkerDescription) -> str:
    lines = [
        f"Task id:            {w.tid}",
        f"Worker name:        {w.name}",
        f"Worker state:       {w.state.capitalize()}",
    ]
    if w.tranquility is not None:
        lines.append(f"Tranquility:        {w.tranquility}")
    if w.progress is not None:
        lines.append(f"Progress:           {w.progress}")
    if w.queue_length is not None:
        lines.append(f"Queue length:       {w.queue_length}")
    if w.persistent_errors is not None:
        lines.append(f"Persistent errors:  {w.persistent_errors}")
    lines.append(f"Total errors:       {w.errors}")
    lines.append(f"Consecutive errors: {w.consecutive_errors}")
    if w.last_error is not None:
        lines.append(f"Last error:         {w.last_error}")
        lines.append(f"Last error time:    {format_time(w.last_error_ms)}")
    if w.freeform:
        lines.append("")
        lines += w.freeform
    return "\n".join(lines)


def _stats(s: NodeStats) -> str:
    lines = [
        f"Node: {s.node}",
        f"Hostname: {s.hostname}",
        f"Garage version: {s.version}",
        f"Database engine: {s.db_engine}",
        "",
        "Table stats:",
    ]
    rows = [["Table", "Items", "MklItems", "MklTodo", "InsQueue", "GcTodo"]]
    rows += [
        [
            t.name,
            str(t.items),
            str(t.merkle_nodes),
            str(t.merkle_todo),
            str(t.insert_queue),
            str(t.gc_todo),
        ]
        for t in s.tables
    ]
    lines.append(format_table(rows, indent="  "))
    lines += [
        "",
        "Block manager stats:",
        f"  number of RC entries: {s.block_rc_entries}",
        f"  resync queue length: {s.resync_queue}",
        f"  blocks with resync errors: {s.resync_errors}",
    ]
    if s.cluster:
        lines += ["", "Storage nodes:"]
        rows = [["ID", "Hostname", "Zone", "Partitions", "DataAvail", "MetaAvail"]]
        for d in s.cluster:
            rows.append(
                [
                    short(d.node),
                    d.hostname or "?",
                    d.zone,
                    str(d.partitions),
                    _avail(d.data_avail, d.data_total),
                    _avail(d.meta_avail, d.meta_total),
                ]
            )
        lines.append(format_table(rows, indent="  "))
        if s.data_avail_estimate is not None or s.meta_avail_estimate is not None:
            lines += [
                "",
                "Estimated available storage space cluster-wide (might be lower in practice):",
            ]
            if s.data_avail_estimate is not None:
                lines.append(f"  data: {format_bytes(s.data_avail_estimate)}")
            if s.meta_avail_estimate is not None:
                lines.append(f"  metadata: {format_bytes(s.meta_avail_estimate)}")
    return "\n".join(lines)


def _avail(avail: int | None, total: int | None) -> str:
    if avail is None or not total:
        return "?"
    permille = avail * 1000 // total
    return f"{format_bytes(avail)}/{format_bytes(total)} ({permille // 10}.{permille % 10}%)"


def _block_errors(e: BlockErrors) -> str:
    rows = [["Hash", "RC", "Errors", "Last error", "Next try"]]
    rows += [
        [
            x.hash,
            str(x.refcount),
            str(x.errors),
            format_time(x.last_try_ms),
            format_time(x.next_try_ms),
        ]
        for x in e.errors
    ]
    return format_table(rows)


def _block_info(b: BlockDetails) -> str:
    lines = [f"Block hash: {b.hash}", f"Refcount: {b.refcount}", ""]
    if not b.refs:
        lines.append("No version references this block.")
        return "\n".join(lines)
    rows = [["Version", "Bucket", "Key", "Upload", "Deleted"]]
    for r in b.refs:
        deleted = "yes" if r.ref_deleted or r.version_deleted else "no"
        if not r.version_found:
            deleted += " (version not found)"
        rows.append(
            [
                r.version,
                "" if r.bucket_id is None else short(r.bucket_id),
                r.key or "",
                "" if r.upload_id is None else short(r.upload_id),
                deleted,
            ]
        )
    lines.append(format_table(rows))
    return "\n".join(lines)
