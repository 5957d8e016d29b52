"""``qsse serve | check | demo``: parse arguments and the config, then hand over to the daemon."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from qsse import __version__
from qsse import config as config_mod
from qsse.config import Config, InstanceConfig
from qsse.errors import ConfigError, QsseError, UpstreamError
from qsse.qbt.client import QbtClient
from qsse.qbt.maindata import decode

CHECK_TIMEOUT = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        if args.command == "serve":
            return serve(config_mod.load(args.config))
        if args.command == "check":
            return check(config_mod.load(args.config))
        if args.command == "demo":
            from qsse.demo import run_demo

            return run_demo(port=args.port, torrents=args.torrents)
    except ConfigError as exc:
        print(f"qsse: {exc}", file=sys.stderr)
        return 2
    except QsseError as exc:
        print(f"qsse: {exc}", file=sys.stderr)
        return 1
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qsse", description=__doc__)
    parser.add_argument("--version", action="version", version=f"qsse {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command")
    serve_p = sub.add_parser("serve", help="run the daemon")
    serve_p.add_argument("-c", "--config", required=True, help="TOML configuration file")
    check_p = sub.add_parser("check", help="log in to every instance once and report")
    check_p.add_argument("-c", "--config", required=True, help="TOML configuration file")
    demo_p = sub.add_parser("demo", help="run against two simulated qBittorrent instances")
    demo_p.add_argument("--port", type=int, default=7476, help="port of the dashboard (default 7476)")
    demo_p.add_argument("--torrents", type=int, default=2000, help="torrents of the first simulated instance")
    for p in (serve_p, check_p, demo_p):
        p.add_argument("--log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"])
    return parser


class _JournalFormatter(logging.Formatter):
    """Under systemd (JOURNAL_STREAM set) prefix the syslog priority and leave the time to journald."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{text}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (every HTTP request of every poll) only when asked for explicitly.
    for noisy in ("httpx2", "httpcore", "hpack", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def serve(cfg: Config) -> int:
    from qsse.daemon import Daemon

    if not cfg.instances:
        logging.getLogger("qsse").warning("%s has no [[instances]]: nothing to sync", cfg.source)
    trio.run(Daemon(cfg, own_process=True).run)
    return 0


@dataclass(frozen=True, slots=True)
class CheckResult:
    instance: InstanceConfig
    version: str = ""
    webapi: str = ""
    torrents: int | None = None
    millis: float | None = None
    error: str | None = None


async def check_instance(cfg: InstanceConfig) -> CheckResult:
    """One login and one full maindata round trip, as the sync loop would do it."""
    started = trio.current_time()
    try:
        with trio.fail_after(CHECK_TIMEOUT):
            async with QbtClient(cfg) as client:
                info = await client.login()
                payload = decode(await client.maindata(0))
    except trio.TooSlowError:
        return CheckResult(cfg, error=f"no answer within {CHECK_TIMEOUT:.0f}s")
    except UpstreamError as exc:
        return CheckResult(cfg, error=str(exc))
    torrents = payload.get("torrents")
    return CheckResult(
        cfg,
        version=info.version,
        webapi=info.webapi_version,
        torrents=len(torrents) if isinstance(torrents, dict) else 0,
        millis=(trio.current_time() - started) * 1000,
    )


async def check_all(cfg: Config) -> list[CheckResult]:
    results: dict[int, CheckResult] = {}

    async def one(inst: InstanceConfig) -> None:
        results[inst.id] = await check_instance(inst)

    async with trio.open_nursery() as nursery:
        for inst in cfg.instances:
            nursery.start_soon(one, inst)
    return [results[i.id] for i in cfg.instances]


def format_table(results: Sequence[CheckResult]) -> str:
    header = ("ID", "NAME", "VERSION", "WEBAPI", "TORRENTS", "RTT MS", "STATUS")
    rows = [
        (
            str(r.instance.id),
            r.instance.name,
            r.version or "-",
            r.webapi or "-",
            "-" if r.torrents is None else str(r.torrents),
            "-" if r.millis is None else f"{r.millis:.0f}",
            "OK" if r.error is None else r.error,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in (header, *rows)]
    return "\n".join(line.rstrip() for line in lines)


def check(cfg: Config) -> int:
    if not cfg.instances:
        print(f"qsse: {cfg.source}: no [[instances]] to check", file=sys.stderr)
        return 1
    results = trio.run(check_all, cfg)
    print(format_table(results))
    return 0 if all(r.error is None for r in results) else 1
