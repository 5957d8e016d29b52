"""The HTTP layer: routes only. Stream logic lives in :mod:`qsse.stream`, state in the supervisor."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Response, jsonify, send_from_directory
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from qsse.qbt.status import InstanceState
from qsse.timefmt import rfc3339
from qsse.web.metrics import render_metrics
from qsse.web.stream_routes import register_stream_routes

if TYPE_CHECKING:
    from qsse.daemon import Daemon


STATIC = Path(__file__).parent / "static"


def create_app(daemon: Daemon) -> QuartTrio:
    app = QuartTrio("qsse", static_folder=None)
    # SSE responses live as long as the client stays; the daemon ends them at shutdown.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 30

    @app.get("/healthz")
    async def healthz() -> Response:
        instances = [_instance_health(s) for s in daemon.supervisor.states()]
        degraded = any(i["state"] in ("down", "auth_failed") for i in instances)
        return jsonify({"status": "degraded" if degraded else "ok", "instances": instances})

    @app.get("/metrics")
    async def metrics() -> Response:
        body = render_metrics(daemon.metric_samples())
        return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")

    register_stream_routes(app, daemon.streams)

    # The dashboard: static files shipped in the package; it uses relative URLs, so it works
    # under server.base_path too.
    @app.get("/")
    async def dashboard() -> Response:
        return await send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    async def static_file(name: str) -> Response:
        return await send_from_directory(STATIC, name)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": (exc.name or "error").lower()}), exc.code or 500

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unhandled error in request")
        return jsonify({"error": "internal error"}), 500

    return app


def _instance_health(state: InstanceState) -> dict[str, Any]:
    return {
        "id": state.instance_id,
        "name": state.name,
        "state": str(state.health),
        "torrents": len(state.data.torrents),
        "rid": state.data.rid,
        "lastSuccessfulSync": None if state.last_success is None else rfc3339(state.last_success),
        "lastError": state.last_error,
    }

