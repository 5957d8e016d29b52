"""Process plumbing for the stream benchmarks: the simulator, the daemon and the client processes.

The orchestrator is plain synchronous code (subprocess, ``httpx2.Client``, ``time.sleep``): it only
starts processes, samples ``/proc`` and moves JSON around, so it never competes with what it measures.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    """A child process whose CPU time and memory are read from ``/proc``."""

    def __init__(self, args: Sequence[str], *, stdin: bool = False, name: str = "") -> None:
        self.name = name or Path(args[1]).name
        self.started = time.time()
        self.gc_log: Path | None = None
        self.popen = subprocess.Popen(
            list(args),
            cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
        )
        self.pid = self.popen.pid

    @property
    def stdout(self) -> IO[str]:
        assert self.popen.stdout is not None
        return self.popen.stdout

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat(5); index 11/12 after the ")" split.
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MiB."""
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def readline(self, timeout: float) -> str:
        """One line of stdout (the child prints few, short lines), failing if the child dies or stalls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.stdout], [], [], 0.2)
            if ready:
                line = self.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.name} exited (rc={self.popen.poll()})")
                return line.strip()
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited (rc={self.popen.returncode})")
        raise TimeoutError(f"{self.name}: no output within {timeout:.0f}s")

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def gc_pauses(proc: Proc, start: float, end: float) -> list[tuple[int, float]]:
    """(generation, ms) of the collections of at least 5 ms that started between ``start`` and ``end``."""
    if proc.gc_log is None or not proc.gc_log.exists():
        return []
    pauses = []
    for line in proc.gc_log.read_text().splitlines():
        generation, at, ms = line.split()
        if start <= float(at) <= end:
            pauses.append((int(generation), float(ms)))
    return pauses


@dataclass
class CpuWindow:
    """CPU use of some processes between :meth:`start` and :meth:`stop`, as % of one core."""

    procs: Mapping[str, Proc]

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = {k: p.cpu_seconds() for k, p in self.procs.items()}

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        return {k: 100 * (p.cpu_seconds() - self._cpu0[k]) / elapsed for k, p in self.procs.items()}


def start_sim(torrents: int, *, tick: float, change: float = 0.01, refresh_ms: int = 1000) -> tuple[Proc, str]:
    proc = Proc(
        [PYTHON, "bench/_sim_main.py", "--torrents", str(torrents), "--tick", str(tick), "--change", str(change),
         "--refresh-ms", str(refresh_ms)],
        name=f"simulator({torrents})",
    )
    line = proc.readline(timeout=120)
    assert line.startswith("port "), line
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def start_daemon(instances: Mapping[int, str], *, interval: float, heartbeat: float = 5.0) -> tuple[Proc, str]:
    """``qsse serve`` on a free port against ``{instance id: url}``; returns once /healthz answers."""
    port = free_port()
    lines = ["[server]", f'listen = "127.0.0.1:{port}"', "[sync]", f"interval = {interval}", f"heartbeat = {heartbeat}"]
    for instance_id, url in instances.items():
        lines += ["[[instances]]", f"id = {instance_id}", f'url = "{url}"', 'username = "admin"',
                  'password = "adminadmin"']
    config = Path(tempfile.mkdtemp(prefix="qsse-bench-")) / "qsse.toml"
    config.write_text("\n".join(lines) + "\n")
    return _serve(config, port)


def start_daemon_with_config(text: str) -> tuple[Proc, str]:
    port = free_port()
    config = Path(tempfile.mkdtemp(prefix="qsse-bench-")) / "qsse.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n' + text)
    return _serve(config, port)


def _serve(config: Path, port: int) -> tuple[Proc, str]:
    # `qsse serve` through a wrapper that logs long garbage-collector pauses (bench/_daemon_gc.py).
    gc_log = config.parent / "gc.log"
    proc = Proc([PYTHON, "bench/_daemon_gc.py", str(gc_log), "--log-level", "warning", "serve", "-c", str(config)],
                name="qsse serve")
    proc.gc_log = gc_log
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    with httpx2.Client(trust_env=False, timeout=2) as http:
        while True:
            try:
                http.get(base + "/healthz")
                return proc, base
            except httpx2.TransportError:
                if proc.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("qsse serve did not come up") from None
                time.sleep(0.1)


def get_json(url: str) -> Any:
    with httpx2.Client(trust_env=False, timeout=10) as http:
        return http.get(url).json()


def metrics(base: str) -> dict[str, float]:
    with httpx2.Client(trust_env=False, timeout=10) as http:
        text = http.get(base + "/metrics").text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            values[name] = float(value)
    return values


class ClientProcess(Proc):
    """``bench/_clients.py`` with a spec; speaks its ready / start / stop protocol."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__([PYTHON, "bench/_clients.py", json.dumps(spec)], stdin=True, name="clients")

    def wait_ready(self, timeout: float = 180) -> None:
        line = self.readline(timeout)
        if line != "ready":
            raise RuntimeError(f"client process said {line!r}")

    def finish(self) -> dict[str, Any]:
        self.send("stop")
        result: dict[str, Any] = json.loads(self.readline(timeout=60))
        self.popen.wait(timeout=30)
        return result
