"""Sans-I/O SSE framing: payload encoding, the per-subscriber ``streamKey`` splice, and gzip.

Theory of operation: a group's frame is the same for every member except ``meta.streamKey``.
``streamKey`` is the last key of ``meta``, and ``meta`` is followed only by the optional
``error``, so a frame is encoded once as a :class:`FrameTemplate` (``prefix`` up to the end of
the shared meta keys, ``suffix`` from the closing brace of ``meta``) and rendering it for one
subscriber is two byte concatenations around that subscriber's pre-encoded key. Nothing here
does I/O or knows about Trio; the session writer calls these functions.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from qsse.timefmt import rfc3339

_encode = msgspec.json.encode


def encode_key(key: str) -> bytes:
    """The JSON string of a client key, computed once per subscription."""
    return _encode(key)


def event_bytes(event: str, payload_json: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + payload_json + b"\n\n"


@dataclass(frozen=True, slots=True)
class FrameTemplate:
    """One SSE event, complete but for ``meta.streamKey``."""

    event: str
    prefix: bytes
    suffix: bytes

    def render(self, key_json: bytes) -> bytes:
        return self.prefix + b',"streamKey":' + key_json + self.suffix

    def render_without_key(self) -> bytes:
        return self.prefix + self.suffix


@dataclass(frozen=True, slots=True)
class Meta:
    """StreamMeta without streamKey; ``None``/``0``/``False`` fields are omitted as the protocol says."""

    instance_id: int
    timestamp: float
    rid: int = 0
    full_update: bool = False
    last_successful_sync: float | None = None
    retry_in_seconds: int | None = None

    def to_json_obj(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"instanceId": self.instance_id}
        if self.rid:
            meta["rid"] = self.rid
        if self.full_update:
            meta["fullUpdate"] = True
        meta["timestamp"] = rfc3339(self.timestamp)
        if self.last_successful_sync is not None:
            meta["lastSuccessfulSync"] = rfc3339(self.last_successful_sync)
        if self.retry_in_seconds is not None:
            meta["retryInSeconds"] = self.retry_in_seconds
        return meta


def frame(
    event: str,
    meta: Meta,
    *,
    data: Mapping[str, Any] | None = None,
    delta: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> FrameTemplate:
    """Encode a StreamPayload (keys in protocol order) once, ready for any subscriber's key."""
    payload: dict[str, Any] = {"type": event}
    if data is not None:
        payload["data"] = data
    if delta is not None:
        payload["delta"] = delta
    payload["meta"] = meta.to_json_obj()
    encoded = _encode(payload)
    # `meta` is the last key and never empty, so the encoding ends with the two closing braces.
    head = encoded[:-2]
    tail = b"}" + (b',"error":' + _encode(error) if error is not None else b"") + b"}"
    return FrameTemplate(
        event=event,
        prefix=b"event: " + event.encode() + b"\ndata: " + head,
        suffix=tail + b"\n\n",
    )


def retry_seconds(seconds: float | None) -> int:
    """``retryInSeconds`` is whole seconds, never 0 for a pending retry."""
    if seconds is None or seconds <= 0:
        return 1
    return max(1, math.ceil(seconds))


def activity_event(kind: str, instance_id: int | None, resource_id: str | None, timestamp: float) -> bytes:
    activity: dict[str, Any] = {"kind": kind}
    if instance_id is not None:
        activity["instanceId"] = instance_id
    if resource_id is not None:
        activity["resourceId"] = resource_id
    activity["timestamp"] = rfc3339(timestamp)
    return event_bytes("activity", _encode({"type": "activity", "activity": activity}))


def accepts_gzip(header_values: Iterable[str]) -> bool:
    """Whether ``Accept-Encoding`` (possibly several header lines) admits exactly ``gzip``.

    Tokens are split on ``,``; parameters follow ``;``; ``q=0`` (any spelling of zero) refuses.
    """
    for value in header_values:
        for token in value.split(","):
            coding, *params = (part.strip() for part in token.split(";"))
            if coding.lower() != "gzip":
                continue
            if _q_value(params) > 0:
                return True
    return False


def _q_value(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


#: gzip container (16 +) with a 4 KiB window, and memLevel 5: about 32 KiB of zlib state per
#: connection instead of the default ~256 KiB, which would alone cost 250 MB at 1,000 clients.
#: Rows and frames repeat their keys within a few KiB, so the ratio barely changes.
GZIP_WBITS = 16 + 12
GZIP_MEMLEVEL = 5


class Encoder:
    """Turns SSE events into body bytes: identity, or one gzip stream flushed after every event."""

    def __init__(self, *, gzip: bool) -> None:
        self.gzip = gzip
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, GZIP_WBITS, GZIP_MEMLEVEL) if gzip else None
        self._finished = False

    def encode(self, events: Iterable[bytes]) -> bytes:
        """Encode some events; each one is decodable by the client as soon as its bytes arrive."""
        if self._compressor is None:
            return b"".join(events)
        out: list[bytes] = []
        for event in events:
            out.append(self._compressor.compress(event))
            # A sync flush per event (not per batch) keeps every event independently decodable.
            out.append(self._compressor.flush(zlib.Z_SYNC_FLUSH))
        return b"".join(out)

    def finish(self) -> bytes:
        """The gzip trailer (empty for identity). Call once, when the body ends cleanly."""
        if self._compressor is None or self._finished:
            return b""
        self._finished = True
        return self._compressor.flush(zlib.Z_FINISH)
