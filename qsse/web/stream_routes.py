"""HTTP adapter of the stream manager: ``GET /stream`` (and ``/api/stream``), ``POST /api/activity``.

No stream logic lives here. The response body is :class:`_SessionBody`, a Quart ``ResponseBody``
(an async context manager) delegating to :meth:`StreamManager.open_session`: the session's task
lives in the manager's nursery and the body only receives bytes from a channel, so nothing
yields across a cancel scope or a nursery (style habit 9), and leaving the body — client gone,
Quart cancelled — unregisters the session at once.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

import trio
from quart import Response, jsonify, request
from quart.wrappers.response import ResponseBody
from quart_trio import QuartTrio

from qsse.stream.manager import SessionStream, StreamManager, StreamRequestError
from qsse.stream.sse import accepts_gzip

MAX_ACTIVITY_KIND = 128
MAX_RESOURCE_ID = 1024

FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class _SessionBody(ResponseBody):
    def __init__(self, stream: SessionStream) -> None:
        self._stream = stream

    async def __aenter__(self) -> trio.MemoryReceiveChannel[bytes]:
        return await self._stream.__aenter__()

    async def __aexit__(self, exc_type: type, exc_value: BaseException, tb: TracebackType) -> None:
        await self._stream.__aexit__(exc_type, exc_value, tb)


def _error(status: int, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    return response


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def register_stream_routes(
    app: QuartTrio, manager: StreamManager, *, authorize: Callable[[], bool] | None = None
) -> None:
    """Add ``GET /stream``, ``GET /api/stream`` and ``POST /api/activity`` to ``app``.

    ``authorize`` (called inside the request context, e.g. to check an API key) turns auth on:
    a stream request it refuses gets 401 after the other checks, as the protocol orders them,
    and ``POST /api/activity`` is then accepted from anywhere it allows instead of from loopback.
    """

    async def stream() -> Response:
        try:
            batch = manager.prepare_batch(request.args.get("streams"), request.args.get("activity") == "1")
        except StreamRequestError as exc:
            return _error(exc.status, exc.message, exc.field)
        if authorize is not None and not authorize():
            return _error(401, "unauthorized")
        gzip = accepts_gzip(request.headers.getlist("Accept-Encoding"))
        response = Response(_SessionBody(manager.open_session(batch, gzip=gzip)), status=200, headers=SSE_HEADERS)
        if gzip:
            response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
        # The response lasts as long as the client stays; the manager ends it at shutdown.
        response.timeout = None
        return response

    async def post_activity() -> Response:
        if manager.stopping:
            return _error(503, "server is shutting down")
        if authorize is not None:
            if not authorize():
                return _error(401, "unauthorized")
        elif any(h in request.headers for h in FORWARDING_HEADERS) or not _is_loopback(request.remote_addr):
            # A reverse proxy on this host makes every client look local: a forwarded request is not.
            return _error(403, "activity may only be published from this host")
        payload = await request.get_json(force=True, silent=True)
        if not isinstance(payload, dict):
            return _error(400, "invalid activity payload", "body")
        kind = payload.get("kind")
        if not isinstance(kind, str) or not kind.strip() or len(kind) > MAX_ACTIVITY_KIND:
            return _error(400, "invalid activity kind", "kind")
        instance_id = payload.get("instanceId")
        if instance_id is not None and (not isinstance(instance_id, int) or isinstance(instance_id, bool)
                                        or instance_id <= 0):
            return _error(400, "invalid instance id", "instanceId")
        resource_id = payload.get("resourceId")
        if resource_id is not None and (not isinstance(resource_id, str) or len(resource_id) > MAX_RESOURCE_ID):
            return _error(400, "invalid resource id", "resourceId")
        delivered = manager.publish_activity(kind.strip(), instance_id, resource_id)
        response = jsonify({"delivered": delivered})
        response.status_code = 202
        return response

    app.add_url_rule("/stream", "stream", stream, methods=["GET"])
    app.add_url_rule("/api/stream", "api_stream", stream, methods=["GET"])
    app.add_url_rule("/api/activity", "api_activity", post_activity, methods=["POST"])


def stream_bind(listen: str, *, write_timeout: float) -> str:
    """A hypercorn ``bind`` for ``listen`` (``host:port``) whose connections abort when a client stops reading.

    hypercorn writes to the socket inside a shield without a timeout (``TCPServer.protocol_send``),
    so a client whose TCP window stays at zero would hold its handler, and with it the daemon's
    shutdown, forever. ``TCP_USER_TIMEOUT`` makes the kernel abort such a connection once data has
    waited ``write_timeout`` seconds; accepted sockets inherit it (and ``TCP_NODELAY``) from the
    listening one. Returns ``fd://N``: hypercorn takes the socket over. ``unix:``/``fd://`` binds,
    and systems without ``TCP_USER_TIMEOUT``, get ``listen`` back unchanged.
    """
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
    if user_timeout is None or listen.startswith(("unix:", "fd://")):
        return listen
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, user_timeout, max(1, int(write_timeout * 1000)))
        sock.bind((host, int(port)))
    except BaseException:
        sock.close()
        raise
    return f"fd://{sock.detach()}"
