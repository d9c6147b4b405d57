"""Client workloads: tasks that drive the cluster and record every operation in the history.

Theory of operation (fault-testing.md §3.3, §3.5)
--------------------------------------------------
A run has a few *client processes* (Jepsen's word: trio tasks here), each talking to its
own node (process ``p`` to node ``p % n + 1``), each doing one operation at a time at a
steady pace (about 40 ops/s in all), and each appending one :class:`~faults.history.Op`
per operation with the runner's monotonic clock. The families use disjoint key prefixes,
which is how :func:`faults.checkers.check_history` routes them:

- **register** ``reg/<k>`` (10 keys): ⅓ get, ⅓ put, ⅓ delete. Each put writes a unique
  value id ``"{process}-{seq}"`` as a self-checksummed body (:mod:`faults._body`), 16 B-1 KiB,
  10% of them 1.5 MiB (two 1 MiB blocks).
- **set** ``set/0/<id>``: adds (puts of unique keys) and full listings of the prefix, 50/50.
- **listing** ``list/0/<id>``: adds, deletes of keys this process added, and listings with
  ``max-keys=7`` so that continuation tokens are crossed while writes land.
- **multipart** ``mpu/<k>``: Create, 3 parts (two of the 5 MiB minimum, a small last one),
  Complete; sometimes part 2 is uploaded again *while* Complete runs, sometimes Complete is
  sent twice; then a read of a multipart key.
- **copy** ``copy/src/<k>`` → ``copy/dst/<k>``: puts on the source, CopyObject, reads of both.

:meth:`Workload.final_reads` is the last phase: every key and prefix read through every
node, each read retried until it answers (or the deadline passes).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias, final

import anyio

from faults._body import decode_chunks, encode_body
from faults._s3 import S3Client, classify, xml_texts
from faults.history import FAIL, INFO, OK, History, Op

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from faults._s3 import Reply

__all__ = ["FINAL_PROCESS_BASE", "Workload", "WorkloadConfig"]

#: One client process's step: (process id, its client, its random source).
_Kind: TypeAlias = "Callable[[int, S3Client, random.Random], Awaitable[None]]"

#: Final reads are recorded as processes 1000, 1001... (one per node), apart from clients.
FINAL_PROCESS_BASE: Final = 1000
_MIB: Final = 1 << 20
#: S3's minimum size of a part that is not the last (our MIN_PART_SIZE, as AWS's).
_MIN_PART_SIZE: Final = 5 * _MIB


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """How much of each family a run does.

    Attributes:
        register: client processes on ``reg/`` keys.
        set_: processes on the ``set/`` prefix.
        listing: processes on the ``list/`` prefix.
        multipart: processes doing multipart uploads.
        copy: processes doing CopyObject.
        rate_ops_s: total pace of the register, set, listing and copy processes.
        register_keys: how many ``reg/`` keys.
        big_fraction: the share of register puts that are 1.5 MiB.
        multipart_interval_s: one upload per process every this many seconds.
        seed: the clients' random seed.
    """

    register: int = 5
    set_: int = 1
    listing: int = 2
    multipart: int = 1
    copy: int = 1
    rate_ops_s: float = 40.0
    register_keys: int = 10
    big_fraction: float = 0.1
    multipart_interval_s: float = 8.0
    seed: int = 0

    @property
    def paced(self) -> int:
        """The processes sharing :attr:`rate_ops_s`."""
        return self.register + self.set_ + self.listing + self.copy


_COPY_KEYS: Final = 3
_MPU_KEYS: Final = 3
_SET_PREFIX: Final = "set/0/"
_LIST_PREFIX: Final = "list/0/"
#: Listings of ``list/`` use small pages (fault-testing.md §3.3: max-keys 7).
_LIST_PAGE: Final = 7
#: A listing process keeps about this many of its keys alive (deletes beyond it).
_LIST_LIVE: Final = 30
# Register value sizes: inline (16 B-1 KiB) or 1.5 MiB (two blocks at block_size 1 MiB).
_SMALL: Final = (16, 1024)
_BIG: Final = 3 * _MIB // 2


@final
class Workload:
    """The client processes of one run, over the nodes' S3 endpoints.

    Args:
        endpoints: the nodes' S3 endpoints, node 1 first.
        key_id: the access key.
        secret: its secret.
        bucket: the bucket.
        region: the S3 region.
        history: where every op is recorded.
        config: the mix and pace.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        key_id: str,
        secret: str,
        bucket: str,
        region: str,
        history: History,
        config: WorkloadConfig,
    ) -> None:
        self._endpoints = list(endpoints)
        self._creds = (key_id, secret, bucket, region)
        self._history = history
        self._config = config
        self._seq: dict[int, int] = {}
        # Per listing process: the keys it added and has not deleted yet.
        self._live: dict[int, list[str]] = {}

    # ------------------------------------------------------------ recording

    def _client(self, node: int) -> S3Client:
        key_id, secret, bucket, region = self._creds
        return S3Client(self._endpoints[node], key_id, secret, bucket, region)

    def _value_id(self, process: int) -> str:
        seq = self._seq.get(process, 0)
        self._seq[process] = seq + 1
        return f"{process}-{seq}"

    def _record(
        self,
        process: int,
        f: str,
        key: str,
        value: str | None,
        outcome: str,
        t0: int,
        data: dict[str, object] | None = None,
    ) -> None:
        t1 = None if outcome == INFO else time.monotonic_ns()
        self._history.append(Op(process, f, key, value, outcome, t0, t1, data or {}))

    async def _write(
        self, process: int, f: str, key: str, value: str | None, send: Awaitable[Reply],
        data: dict[str, object] | None = None,
    ) -> Reply:  # fmt: skip
        t0 = time.monotonic_ns()
        reply: Reply | None = None
        try:
            reply = await send
        finally:
            if reply is None:  # cancelled in flight (end of the phase): it may still land
                self._record(
                    process, f, key, value, INFO, t0, {**(data or {}), "error": "cancelled"}
                )
        outcome = classify(reply, write=True)
        self._record(process, f, key, value, outcome, t0, _with_error(data, reply))
        return reply

    # ------------------------------------------------------------ single ops

    async def put(
        self, client: S3Client, process: int, key: str, size: int, value: str | None = None
    ) -> str | None:
        """PUT a new unique value (``value``, or a fresh id) on ``key``; its id, None unless
        ok."""
        value = value or self._value_id(process)
        body = encode_body(value, size)
        send = client.request("PUT", key, body=body)
        reply = await self._write(process, "put", key, value, send, {"size": len(body)})
        return value if classify(reply, write=True) == OK else None

    async def delete(self, client: S3Client, process: int, key: str) -> str:
        """DELETE ``key``; the outcome."""
        reply = await self._write(process, "delete", key, None, client.request("DELETE", key))
        return classify(reply, write=True)

    async def get(self, client: S3Client, process: int, key: str) -> str:
        """GET ``key`` and decode the body; the outcome."""
        t0 = time.monotonic_ns()
        reply = await client.request("GET", key)
        outcome = classify(reply, write=False)
        value: str | None = None
        data: dict[str, object] = {}
        if outcome == OK and reply.status != 404:
            decoded = decode_chunks(reply.body)
            data = {"parts": list(decoded.values), "values": sorted(set(decoded.values))}
            # One chunk per body, except multipart objects (one per part) and copy
            # destinations (whose mixed bodies the copy checker names).
            single = not key.startswith(("mpu/", "copy/dst/"))
            if decoded.corrupt or (single and len(decoded.values) > 1):
                data["corrupt"] = True
            value = decoded.values[0] if decoded.values else "(empty)"
            if key.startswith("mpu/"):
                value = "+".join(decoded.values) or "(empty)"
            # For the report: which version the node served (ms precision is not exposed).
            data["last_modified"] = reply.header("last-modified")
        self._record(process, "get", key, value, outcome, t0, _with_error(data, reply))
        return outcome

    async def list_prefix(self, client: S3Client, process: int, prefix: str, page_size: int) -> str:
        """ListObjectsV2 of ``prefix`` through every page; the outcome."""
        t0 = time.monotonic_ns()
        pages: list[list[str]] = []
        token: str | None = None
        while True:
            query = [("list-type", "2"), ("prefix", prefix), ("max-keys", str(page_size))]
            if token is not None:
                query.append(("continuation-token", token))
            reply = await client.request("GET", query=query)
            outcome = classify(reply, write=False)
            if outcome != OK or reply.status != 200:
                self._record(process, "list", prefix, None, FAIL, t0, _with_error({}, reply))
                return FAIL
            pages.append(xml_texts(reply.body, "Contents", "Key"))
            truncated = xml_texts(reply.body, "IsTruncated") == ["true"]
            tokens = xml_texts(reply.body, "NextContinuationToken")
            if not truncated or not tokens:
                break
            token = tokens[0]
        self._record(process, "list", prefix, None, OK, t0, {"pages": pages})
        return OK

    async def copy(self, client: S3Client, process: int, source: str, dest: str) -> str:
        """CopyObject ``source`` -> ``dest``; the outcome."""
        bucket = self._creds[2]
        header = ("x-amz-copy-source", f"/{bucket}/{source}")
        reply = await self._write(
            process, "copy", dest, None, client.request("PUT", dest, headers=[header]),
            {"source": source},
        )  # fmt: skip
        return classify(reply, write=True)

    async def multipart(self, client: S3Client, process: int, key: str, rng: random.Random) -> None:
        """One multipart upload of 3 parts, with the races of fault-testing.md §3.3."""
        t0 = time.monotonic_ns()
        reply = await client.request("POST", key, query=[("uploads", "")])
        outcome = classify(reply, write=True)
        upload = value = None
        if outcome == OK:
            upload = xml_texts(reply.body, "UploadId")[0]
            value = self._value_id(process)
        self._record(process, "create-mpu", key, value, outcome, t0, _with_error({}, reply))
        if upload is None or value is None:
            return
        sizes = [_MIN_PART_SIZE, _MIN_PART_SIZE, rng.randint(*_SMALL)]
        etags: list[tuple[int, str, str]] = []
        for number, size in enumerate(sizes, start=1):
            part = await self._upload_part(client, process, key, upload, value, number, size)
            if part is None:
                return
            etags.append(part)
        race = rng.random() < 0.2
        duplicate = rng.random() < 0.2
        done = await self._complete(client, process, key, upload, value, etags, race=race)
        if done == OK and duplicate:
            await self._complete(client, process, key, upload, value, etags, race=False)

    async def _upload_part(
        self, client: S3Client, process: int, key: str, upload: str, value: str,
        number: int, size: int, suffix: str = "",
    ) -> tuple[int, str, str] | None:  # fmt: skip
        part_value = f"{value}.p{number}{suffix}"
        query = [("partNumber", str(number)), ("uploadId", upload)]
        send = client.request("PUT", key, query=query, body=encode_body(part_value, size))
        reply = await self._write(process, "upload-part", key, part_value, send)
        etag = reply.header("etag")
        if classify(reply, write=True) != OK or etag is None:
            return None
        return number, etag, part_value

    async def _complete(
        self, client: S3Client, process: int, key: str, upload: str, value: str,
        etags: list[tuple[int, str, str]], *, race: bool,
    ) -> str:  # fmt: skip
        xml = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag, _ in etags
        )
        body = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
        send = client.request("POST", key, query=[("uploadId", upload)], body=body)
        parts = [v for _, _, v in etags]
        if not race:
            reply = await self._write(process, "mpu", key, value, send, {"parts": parts})
            return classify(reply, write=True)
        # Part 2 uploaded again (other content) while Complete names the first upload:
        # Complete must then either use the named part or refuse (InvalidPart).
        outcome = FAIL
        racer = self._client(self._endpoints.index(client.endpoint))

        async def complete() -> None:
            nonlocal outcome
            reply = await self._write(process, "mpu", key, value, send, {"parts": parts})
            outcome = classify(reply, write=True)

        async def reupload() -> None:
            await self._upload_part(
                racer, process, key, upload, value, 2, _MIN_PART_SIZE, suffix="r"
            )

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(reupload)
                tg.start_soon(complete)
        finally:
            await racer.aclose()
        return outcome

    # ------------------------------------------------------------ processes

    async def run(self) -> None:
        """Runs every client process until cancelled."""
        cfg = self._config
        mix: list[tuple[_Kind, int]] = [
            (self._register, cfg.register),
            (self._set, cfg.set_),
            (self._listing, cfg.listing),
            (self._copy, cfg.copy),
            (self._multipart, cfg.multipart),
        ]
        kinds = [kind for kind, n in mix for _ in range(n)]
        async with anyio.create_task_group() as tg:
            for process, kind in enumerate(kinds):
                tg.start_soon(self._process, process, kind)

    async def _process(self, process: int, kind: _Kind) -> None:
        rng = random.Random(f"{self._config.seed}/{process}")
        client = self._client(process % len(self._endpoints))
        paced = kind != self._multipart
        interval = (
            self._config.paced / self._config.rate_ops_s
            if paced
            else self._config.multipart_interval_s
        )
        # Processes start spread over one interval, so the load is even from the start.
        next_at = anyio.current_time() + rng.random() * interval
        try:
            while True:
                await anyio.sleep_until(next_at)
                await kind(process, client, rng)
                next_at = max(next_at + interval, anyio.current_time())
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _register(self, process: int, client: S3Client, rng: random.Random) -> None:
        key = f"reg/{rng.randrange(self._config.register_keys)}"
        what = rng.randrange(3)
        if what == 0:
            await self.get(client, process, key)
        elif what == 1:
            big = rng.random() < self._config.big_fraction
            await self.put(client, process, key, _BIG if big else rng.randint(*_SMALL))
        else:
            await self.delete(client, process, key)

    async def _set(self, process: int, client: S3Client, rng: random.Random) -> None:
        if rng.random() < 0.5:
            value = self._value_id(process)  # the element's key and value share the id
            await self.put(client, process, _SET_PREFIX + value, rng.randint(*_SMALL), value)
        else:
            await self.list_prefix(client, process, _SET_PREFIX, 1000)

    async def _listing(self, process: int, client: S3Client, rng: random.Random) -> None:
        mine = self._live.setdefault(process, [])
        roll = rng.random()
        if roll < 0.4 or not mine:
            value = self._value_id(process)
            mine.append(_LIST_PREFIX + value)  # info adds too: deleting them is a fair race
            await self.put(client, process, _LIST_PREFIX + value, rng.randint(*_SMALL), value)
        elif roll < 0.6 or len(mine) > _LIST_LIVE:
            key = mine.pop(rng.randrange(len(mine)))
            await self.delete(client, process, key)
        else:
            await self.list_prefix(client, process, _LIST_PREFIX, _LIST_PAGE)

    async def _copy(self, process: int, client: S3Client, rng: random.Random) -> None:
        k = rng.randrange(_COPY_KEYS)
        source, dest = f"copy/src/{k}", f"copy/dst/{k}"
        roll = rng.random()
        if roll < 0.4:
            big = rng.random() < self._config.big_fraction
            await self.put(client, process, source, _BIG if big else rng.randint(*_SMALL))
        elif roll < 0.7:
            await self.copy(client, process, source, dest)
        elif roll < 0.9:
            await self.get(client, process, dest)
        else:
            await self.get(client, process, source)

    async def _multipart(self, process: int, client: S3Client, rng: random.Random) -> None:
        await self.multipart(client, process, f"mpu/{rng.randrange(_MPU_KEYS)}", rng)
        await self.get(client, process, f"mpu/{rng.randrange(_MPU_KEYS)}")

    # ------------------------------------------------------------ final reads

    def final_keys(self) -> list[str]:
        """Every object key the final phase reads."""
        cfg = self._config
        keys = [f"reg/{k}" for k in range(cfg.register_keys)] if cfg.register else []
        if cfg.copy:
            keys += [f"copy/{d}/{k}" for d in ("src", "dst") for k in range(_COPY_KEYS)]
        if cfg.multipart:
            keys += [f"mpu/{k}" for k in range(_MPU_KEYS)]
        return keys

    def final_prefixes(self) -> list[tuple[str, int]]:
        """Every prefix the final phase lists, with its page size."""
        out = [(_SET_PREFIX, 1000)] if self._config.set_ else []
        return out + ([(_LIST_PREFIX, _LIST_PAGE)] if self._config.listing else [])

    async def final_reads(self, nodes: Sequence[int], *, deadline_s: float) -> bool:
        """Reads every key and lists every prefix through each of ``nodes`` (0-based),
        retrying each until it answers; whether all answered within ``deadline_s``."""
        complete = True

        async def through(node: int) -> None:
            nonlocal complete
            process = FINAL_PROCESS_BASE + node
            client = self._client(node)
            todo: list[Callable[[], Awaitable[str]]] = [
                _bind(self.get, client, process, key) for key in self.final_keys()
            ]
            todo += [
                _bind(self.list_prefix, client, process, prefix, size)
                for prefix, size in self.final_prefixes()
            ]
            try:
                with anyio.move_on_after(deadline_s) as scope:
                    for read in todo:
                        # Retried until it answers: the node may still be catching up.
                        while await read() != OK:  # noqa: ASYNC110
                            await anyio.sleep(0.5)
                if scope.cancelled_caught:
                    complete = False
            finally:
                with anyio.CancelScope(shield=True):
                    await client.aclose()

        async with anyio.create_task_group() as tg:
            for node in nodes:
                tg.start_soon(through, node)
        return complete


def _bind(fn: Callable[..., Awaitable[str]], *args: object) -> Callable[[], Awaitable[str]]:
    async def call() -> str:
        return await fn(*args)

    return call


def _with_error(data: dict[str, object] | None, reply: Reply) -> dict[str, object]:
    out = dict(data or {})
    if reply.status is not None and reply.status >= 300 and reply.status != 404:
        out["status"] = reply.status
    if reply.error:
        out["error"] = reply.error[:200]
    return out
