"""The composition root: build every component without I/O, then run them in one nursery.

Theory of operation (signals and shutdown)
------------------------------------------
SIGHUP re-reads the config file (:meth:`Daemon.reload`). SIGTERM/SIGINT set ``stopping``. That
is hypercorn's shutdown trigger (it stops accepting), and from that moment the whole tree has
``server.shutdown_timeout`` seconds: the stream manager answers new requests with 503 and ends
its sessions first (so hypercorn's graceful wait never has to cut an endless SSE response), then
the root scope is cancelled, which stops groups, heartbeats and sync loops mid-request. A second
SIGTERM/SIGINT cancels at once.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from qsse import config as config_mod
from qsse.config import Config
from qsse.errors import ConfigError, QsseError
from qsse.qbt.client import QbtClient
from qsse.qbt.sync import ClientFactory, InstanceSupervisor
from qsse.stream import StreamManager
from qsse.views.engine import ViewEngine
from qsse.web.app import create_app
from qsse.web.metrics import Sample
from qsse.web.stream_routes import stream_bind

log = logging.getLogger(__name__)

#: Seconds between forced full garbage collections (see tune_gc).
FULL_GC_PERIOD = 300.0
#: Seconds one SSE write may take before the client counts as gone (protocol section 5).
WRITE_TIMEOUT = 10.0


class ListenError(QsseError):
    """The HTTP address could not be bound."""

ASGIReceive = Callable[[], Awaitable[Any]]
ASGISend = Callable[[Any], Awaitable[None]]
#: hypercorn's ASGI framework type is a union of precise callables; ours are plain ASGI 3 apps.
ASGIApp = Any


def tune_gc() -> None:
    """Make the cyclic garbage collector's stop-the-world pauses short and rare.

    Why: the merged torrent state is tens of thousands of long-lived dicts, and every tick
    allocates many short-lived ones (rows, frames). With the default thresholds a full
    (generation 2) collection ran every few seconds and stopped the event loop for up to
    ~270 ms at 10k torrents, delaying every frame in flight. Measured with 1,000 clients at 10k
    torrents (bench/bench_stream.py): p99 tick-to-client 690-830 ms with the defaults, 350 ms
    with these thresholds, at the same RSS; (50_000, 50, 1_000) was no faster but used 20-40 %
    more memory, as cyclic garbage waited longer.
    """
    gc.freeze()  # what exists at start (modules, config) is never garbage
    gc.set_threshold(20_000, 20, 100)


async def collect_garbage_periodically(period: float = FULL_GC_PERIOD) -> None:
    """With full collections made rare, run one on a fixed period so cyclic garbage stays bounded.

    Returns: never, unless cancelled.
    """
    while True:
        await trio.sleep(period)
        started = time.perf_counter()
        found = gc.collect()
        log.debug("full garbage collection: %d objects, %.0f ms", found, (time.perf_counter() - started) * 1000)


class Daemon:
    def __init__(self, config: Config, *, client_factory: ClientFactory = QbtClient, own_process: bool = False
                 ) -> None:
        """``own_process``: the daemon is the process (``qsse serve``/``demo``), so it may tune the GC."""
        self.config = config
        self.own_process = own_process
        self.supervisor = InstanceSupervisor(config.instances, config.sync, client_factory)
        self.streams = StreamManager(self.supervisor, ViewEngine(), heartbeat=config.sync.heartbeat)
        self.app = create_app(self)
        self.stopping = trio.Event()
        self.reloads_applied = 0
        self.reloads_failed = 0

    async def run(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until a signal or :meth:`stop`; started() with the bound addresses.

        Returns: after a complete shutdown, within ``server.shutdown_timeout`` of the trigger.
        """
        hypercorn_config = self._hypercorn_config()
        async with trio.open_nursery() as root:
            root.start_soon(self._watch_signals, root.cancel_scope, name="signals")
            if self.own_process:
                tune_gc()
                root.start_soon(collect_garbage_periodically, name="gc")
            await root.start(self.supervisor.run)
            await root.start(self.streams.run)
            bound: list[str] = await root.start(
                partial(serve, self._asgi(), hypercorn_config, shutdown_trigger=self.stopping.wait)
            )
            log.info("listening on %s", ", ".join(bound))
            task_status.started(bound)
            await self.stopping.wait()
            log.info("shutting down (deadline %.0fs)", self.config.server.shutdown_timeout)
            deadline = trio.current_time() + self.config.server.shutdown_timeout
            root.cancel_scope.deadline = deadline
            # Sessions end first, so hypercorn's graceful wait never has to cut an endless response.
            await self.streams.shutdown(deadline)
            root.cancel_scope.cancel()
        log.info("stopped")

    def stop(self) -> None:
        self.stopping.set()

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP). Invalid → logged, the running configuration stays."""
        try:
            new = config_mod.load(self.config.source)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.reloads_failed += 1
            return False
        not_applied = self.supervisor.reconfigure(new.instances, new.sync)
        if new.server != self.config.server:
            not_applied.append("[server] changed (restart to apply)")
        if new.sync.heartbeat != self.config.sync.heartbeat:
            not_applied.append("sync.heartbeat changed (restart to apply)")
        for what in not_applied:
            log.warning("reload: %s", what)
        # What was not applied stays as it runs, so self.config keeps describing the daemon.
        self.config = dataclasses.replace(
            new, server=self.config.server, sync=dataclasses.replace(new.sync, heartbeat=self.config.sync.heartbeat)
        )
        self.reloads_applied += 1
        self.streams.config_reloaded()
        log.info("configuration reloaded from %s", new.source)
        return True

    async def _watch_signals(self, root_scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                if self.stopping.is_set():
                    log.warning("second %s: stopping now", signal.Signals(signum).name)
                    root_scope.cancel()
                    return
                log.info("%s received", signal.Signals(signum).name)
                self.stop()

    def _hypercorn_config(self) -> HypercornConfig:
        """Raises ListenError when the address cannot be bound (in use, not local, no permission)."""
        cfg = HypercornConfig()
        listen = self.config.server.listen
        try:
            cfg.bind = [stream_bind(listen, write_timeout=WRITE_TIMEOUT)]
        except OSError as exc:
            raise ListenError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
        cfg.graceful_timeout = self.config.server.shutdown_timeout
        cfg.accesslog = None
        cfg.errorlog = logging.getLogger("qsse.http")
        return cfg

    def _asgi(self) -> ASGIApp:
        base = self.config.server.base_path
        app: ASGIApp = self.app
        if not base:
            return app

        async def strip_base_path(scope: MutableMapping[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
            # nginx may forward /qsse/stream as is; routes are registered without the prefix.
            # Quart routes on ``path`` minus ``root_path``, so ``path`` keeps the prefix; a proxy
            # that already stripped it (proxy_pass with a URI) gets it put back.
            if scope["type"] in ("http", "websocket"):
                path = scope.get("path", "")
                if path == base:
                    path = base + "/"
                elif not path.startswith(base + "/"):
                    path = base + path
                scope = {**scope, "path": path, "root_path": base}
            await app(scope, receive, send)

        return strip_base_path

    def metric_samples(self) -> Iterator[Sample]:
        stats = self.streams.statistics()
        yield Sample("qsse_active_sessions", stats.active_sessions, "SSE connections open now")
        yield Sample("qsse_active_subscriptions", stats.active_subscriptions, "Stream subscriptions open now")
        yield Sample("qsse_active_groups", stats.active_groups, "Distinct views being computed")
        yield Sample("qsse_active_sync_loops", stats.active_sync_loops, "Sync loops running now")
        yield Sample("qsse_events_published_total", stats.events_published, "Events queued for clients", "counter")
        yield Sample("qsse_events_dropped_total", stats.events_dropped, "Events lost (full queues)", "counter")
        yield Sample("qsse_sync_errors_total", stats.sync_errors, "Failed sync polls", "counter")
        yield Sample("qsse_sessions_dropped_slow_total", stats.sessions_dropped_slow,
                     "SSE sessions ended for not keeping up", "counter")
        yield Sample("qsse_bytes_sent_total", stats.bytes_sent, "Bytes written to SSE clients", "counter")
        yield Sample("qsse_config_reloads_total", self.reloads_applied, "Config reloads applied (SIGHUP)", "counter")
        yield Sample("qsse_config_reload_failures_total", self.reloads_failed, "Config reloads refused (invalid file)",
                     "counter")
        for state in self.supervisor.states():
            labels = (("instance", str(state.instance_id)), ("name", state.name))
            yield Sample("qsse_instance_up", 1.0 if state.connected else 0.0, "Last sync succeeded", labels=labels)
            yield Sample("qsse_instance_torrents", len(state.data.torrents), "Torrents in the merged state",
                         labels=labels)
            if state.last_success is not None:
                yield Sample("qsse_instance_last_success_timestamp_seconds", state.last_success,
                             "Unix time of the last successful sync", labels=labels)
            if state.sync_duration is not None:
                yield Sample("qsse_instance_sync_duration_seconds", state.sync_duration,
                             "Duration of the last successful poll", labels=labels)
