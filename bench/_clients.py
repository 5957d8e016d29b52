"""The client side of the stream benchmarks, run as its own process (``bench/_procs.ClientProcess``).

Run: .venv/bin/python bench/_clients.py '<json spec>'

Modes (``spec["mode"]``):

- ``sse``: one SSE connection per entry of ``spec["subs"]`` (one subscription each) to the daemon at
  ``spec["base"]``. Frames are parsed cheaply: the event name from the first line, ``meta.timestamp``
  and ``meta.rid`` found with ``rfind`` (``meta`` is the last key of every payload), never a JSON decode.
- ``poll``: ``spec["n"]`` direct ``sync/maindata`` pollers against the simulator at ``spec["sim"]``,
  each with its own session and rid, waiting ``interval`` (+0-10 %) after each answer like qsse does.

Protocol with the orchestrator: prints ``ready`` once every connection has its init (every poller its
first answer); then ``start`` on stdin opens the measurement window and ``stop`` closes it and makes the
process print one JSON line of results and exit. ``spec["checkpoints"]`` (seconds after the first
connect) additionally samples the simulator's ``/sim/statistics`` at those moments.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11
import httpx2
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sse_client import SseStream

_TIMESTAMP = b'"timestamp":"'
_RID = b'"rid":'
_POLL_RID = re.compile(rb'"rid":(\d+)')


class CountingStream:
    """A socket stream that counts the bytes received on the wire (HTTP chunk framing included)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.stream.receive_some(max_bytes)
        self.received += len(data)
        return data

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)


@dataclass
class Recorder:
    """Everything the process measures; only events inside the window count (inits always do)."""

    expected: int
    measuring: bool = False
    ready: trio.Event = field(default_factory=trio.Event)
    inits: int = 0
    init_sizes: list[int] = field(default_factory=list)
    init_times: list[float] = field(default_factory=list)
    frames: Counter[str] = field(default_factory=Counter)
    frame_bytes: Counter[str] = field(default_factory=Counter)
    #: (client index, rid, meta.timestamp as epoch seconds, wall-clock receive time) of delta/update frames.
    ticks: list[tuple[int, int, float, float]] = field(default_factory=list)
    wires: list[CountingStream] = field(default_factory=list)
    wire_at_start: int = 0
    wire_at_stop: int = 0
    errors: list[str] = field(default_factory=list)
    polls: int = 0
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)

    def init_done(self, size: int) -> None:
        self.inits += 1
        self.init_sizes.append(size)
        self.init_times.append(time.time())
        self._settled()

    def failed(self, text: str) -> None:
        self.errors.append(text)
        self._settled()

    def _settled(self) -> None:
        if self.inits + len(self.errors) >= self.expected:
            self.ready.set()


_ts_cache: dict[bytes, float] = {}


def _epoch(raw: bytes) -> float:
    value = _ts_cache.get(raw)
    if value is None:
        if len(_ts_cache) > 10_000:
            _ts_cache.clear()
        value = _ts_cache[raw] = datetime.fromisoformat(raw.decode()).timestamp()
    return value


def _meta(frame: bytes) -> tuple[int, float]:
    at = frame.rfind(_TIMESTAMP) + len(_TIMESTAMP)
    ts = _epoch(frame[at : frame.index(b'"', at)])
    rid_at = frame.rfind(_RID, 0, at)
    rid = 0
    if rid_at >= 0:
        end = rid_at + len(_RID)
        while frame[end : end + 1].isdigit():
            end += 1
        rid = int(frame[rid_at + len(_RID) : end])
    return rid, ts


async def sse_client(index: int, base: str, sub: dict[str, Any], rec: Recorder, gate: trio.Semaphore) -> None:
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    target = "/stream?" + urlencode({"streams": json.dumps([sub])})
    async with gate:
        try:
            raw = await trio.open_tcp_stream(url.hostname, url.port)
        except OSError as exc:
            rec.failed(f"client {index}: {exc}")
            return
        wire = CountingStream(raw)
        rec.wires.append(wire)
        sse = SseStream(wire)  # type: ignore[arg-type]  # duck-typed: receive_some/send_all only
        await sse.start(target, url.netloc, {})
        if sse.status != 200:
            rec.failed(f"client {index}: HTTP {sse.status}")
            await raw.aclose()
            return
        seeded = False
        buffer = b""
        while not seeded:
            read = await _read(index, sse, buffer, rec, seeded)
            if read is None:
                return
            buffer, seeded = read
    async with raw:
        while (read := await _read(index, sse, buffer, rec, seeded=True)) is not None:
            buffer = read[0]


async def _read(index: int, sse: SseStream, buffer: bytes, rec: Recorder, seeded: bool) -> tuple[bytes, bool] | None:
    """Read once from the socket and account for every complete frame; None when the stream ended."""
    # SseStream.next() JSON-decodes every frame: too slow for 1,000 clients, so frames are parsed here.
    event = await sse.next_http_event()
    now = time.time()
    if not isinstance(event, h11.Data):
        if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            rec.failed(f"client {index}: stream ended")
            return None
        return buffer, seeded
    buffer += bytes(event.data)
    while (end := buffer.find(b"\n\n")) >= 0:
        frame, buffer = buffer[: end + 2], buffer[end + 2 :]
        name = frame[7 : frame.index(b"\n")].decode()
        if name == "init" and not seeded:
            seeded = True
            rec.init_done(len(frame))
            continue
        if not rec.measuring:
            continue
        rec.frames[name] += 1
        rec.frame_bytes[name] += len(frame)
        if name in ("delta", "update"):
            rid, ts = _meta(frame)
            rec.ticks.append((index, rid, ts, now))
    return buffer, seeded


async def poller(index: int, spec: dict[str, Any], rec: Recorder, first: list[bool]) -> None:
    interval = float(spec["interval"])
    async with httpx2.AsyncClient(base_url=spec["sim"], trust_env=False, verify=False, timeout=60.0) as http:
        r = await http.post("/api/v2/auth/login", data={"username": "admin", "password": "adminadmin"})
        r.raise_for_status()
        rid = 0
        while True:
            r = await http.get("/api/v2/sync/maindata", params={"rid": rid})
            r.raise_for_status()
            found = _POLL_RID.search(r.content)
            rid = int(found.group(1)) if found else rid
            if rec.measuring:
                rec.polls += 1
            if not first[index]:
                first[index] = True
                rec.init_done(len(r.content))
            await trio.sleep(interval * (1 + random.uniform(0, 0.1)))


async def sample_checkpoints(sim: str, moments: list[float], t0: float, rec: Recorder) -> None:
    async with httpx2.AsyncClient(trust_env=False, verify=False) as http:
        for moment in moments:
            await trio.sleep_until(trio.current_time() + max(0.0, t0 + moment - time.time()))
            stats = (await http.get(sim + "/sim/statistics")).json()
            rec.checkpoints.append({"at": moment, "requests": stats["requests"]})


async def control(rec: Recorder, cancel: trio.CancelScope) -> None:
    await rec.ready.wait()
    print("ready", flush=True)
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    buffer = b""
    start = 0.0
    while True:
        while b"\n" not in buffer:
            data = await stdin.receive_some(1024)
            if not data:
                cancel.cancel()
                return
            buffer += data
        line, buffer = buffer.split(b"\n", 1)
        if line.strip() == b"start":
            start = time.time()
            rec.wire_at_start = sum(w.received for w in rec.wires)
            rec.measuring = True
        elif line.strip() == b"stop":
            rec.measuring = False
            rec.wire_at_stop = sum(w.received for w in rec.wires)
            rec.window = (start, time.time())
            cancel.cancel()
            return


async def main(spec: dict[str, Any]) -> None:
    t0 = time.time()
    mode = spec["mode"]
    n = len(spec["subs"]) if mode == "sse" else int(spec["n"])
    rec = Recorder(expected=n)
    async with trio.open_nursery() as nursery:
        if spec.get("checkpoints"):
            nursery.start_soon(sample_checkpoints, spec["sim"], spec["checkpoints"], t0, rec)
        if mode == "sse":
            gate = trio.Semaphore(int(spec.get("parallel", 50)))
            for i, sub in enumerate(spec["subs"]):
                nursery.start_soon(sse_client, i, spec["base"], sub, rec, gate)
        else:
            first = [False] * n
            for i in range(n):
                nursery.start_soon(poller, i, spec, rec, first)
        await control(rec, nursery.cancel_scope)
    wire = rec.wire_at_stop - rec.wire_at_start
    result = {
        "t0": t0,
        "inits": rec.inits,
        "init_sizes": rec.init_sizes,
        "all_inits_at": max(rec.init_times) - t0 if rec.init_times else None,
        "frames": dict(rec.frames),
        "frame_bytes": dict(rec.frame_bytes),
        "wire_bytes": wire,
        "ticks": rec.ticks,
        "polls": rec.polls,
        "checkpoints": rec.checkpoints,
        "window": rec.window,
        "errors": rec.errors[:20],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
