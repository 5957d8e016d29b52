"""A real SSE client for end-to-end tests (httpx2 over a socket) and the reference delta applier.

The applier is the client rule of the protocol (section 8): upsert the frame's rows by key, then
order by ``delta.order`` when present (dropping rows that left the page), else keep the order;
every other field comes from the frame, except ``counts``/``preferences`` which stay when absent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11
import trio

ROW_LISTS = ("torrents", "cross_instance_torrents")
KEPT_WHEN_ABSENT = ("counts", "preferences")


@dataclass
class Event:
    name: str
    payload: dict[str, Any]


class SseStream:
    """A minimal HTTP/1.1 SSE client on a real socket (h11): no async generators to leak at close."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self._buffer = b""
        self._ended = False

    async def next_http_event(self) -> h11.Event:
        """The next h11 event of the response (for readers that parse frames themselves)."""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.receive_some(65536)
                self.conn.receive_data(data)
                continue
            assert not isinstance(event, type), event  # PAUSED cannot happen: one request per connection
            return event

    async def start(self, target: str, host: str, headers: Mapping[str, str]) -> None:
        request = h11.Request(method="GET", target=target,
                              headers=[("Host", host), *headers.items()])
        await self.stream.send_all(self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
        response = await self.next_http_event()
        assert isinstance(response, h11.Response)
        self.status = response.status_code
        self.headers = {k.decode().lower(): v.decode() for k, v in response.headers}

    async def read_all(self) -> bytes:
        chunks = []
        while not isinstance(event := await self.next_http_event(), h11.EndOfMessage | h11.ConnectionClosed):
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
        return b"".join(chunks)

    async def next(self) -> Event:
        while b"\n\n" not in self._buffer:
            if self._ended:
                raise EOFError("stream ended")
            event = await self.next_http_event()
            if isinstance(event, h11.Data):
                self._buffer += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self._ended = True
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        name, data = "", ""
        for line in raw.decode().split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = line[len("data: "):]
        return Event(name, json.loads(data))

    async def next_of(self, *names: str) -> Event:
        while True:
            event = await self.next()
            if event.name in names:
                return event


@contextlib.asynccontextmanager
async def open_stream(base_url: str, streams: list[dict[str, Any]] | None = None, *, activity: bool = False,
                      headers: Mapping[str, str] | None = None) -> AsyncIterator[SseStream]:
    query: dict[str, str] = {}
    if streams is not None:
        query["streams"] = json.dumps(streams)
    if activity:
        query["activity"] = "1"
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    async with stream:
        sse = SseStream(stream)
        await sse.start("/stream?" + urlencode(query), url.netloc, headers or {})
        if sse.status != 200:
            raise AssertionError(f"/stream answered {sse.status}: {(await sse.read_all())!r}")
        yield sse


def row_key(row: Mapping[str, Any], aggregated: bool) -> str:
    return f"{row['instance_id']}:{row['hash']}" if aggregated else str(row["hash"])


@dataclass
class ClientView:
    """What a dashboard holds for one subscription after applying frames."""

    data: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    frames: int = 0

    @property
    def aggregated(self) -> bool:
        return bool(self.data.get("isCrossInstance"))

    def apply(self, event: Event) -> None:
        data = event.payload["data"]
        aggregated = bool(data.get("isCrossInstance"))
        rows = data.get("cross_instance_torrents" if aggregated else "torrents") or []
        if event.name in ("init", "update"):
            self.data = {k: v for k, v in data.items() if k not in ROW_LISTS}
            self.rows = {row_key(r, aggregated): r for r in rows}
            self.order = [row_key(r, aggregated) for r in rows]
        elif event.name == "delta":
            for key in KEPT_WHEN_ABSENT:
                if key not in data and key in self.data:
                    data = {**data, key: self.data[key]}
            self.data = {k: v for k, v in data.items() if k not in ROW_LISTS}
            for r in rows:
                self.rows[row_key(r, aggregated)] = r
            order = (event.payload.get("delta") or {}).get("order")
            if order is not None:
                self.order = list(order)
                self.rows = {k: self.rows[k] for k in self.order}
        else:
            raise ValueError(f"not a view frame: {event.name}")
        self.frames += 1

    def page(self) -> Iterator[dict[str, Any]]:
        return (self.rows[k] for k in self.order)
