"""Real ``qbittorrent-nox`` processes for integration tests: start, fill, restart, stop.

Theory of operation
-------------------
Everything here is synchronous (subprocess + ``httpx2.Client``) so fixtures can use it without an event loop.
Facts it relies on were measured on qBittorrent 4.5.2 (see docs/qbittorrent-testbed.md in the shared notes):

* The whole configuration is written to ``qBittorrent.conf`` before the first start, because CLI flags leave DHT,
  UPnP and a WebUI on every interface enabled. qBittorrent rewrites the file itself afterwards, so it is only
  written when absent; a restart keeps whatever the API changed (e.g. a new password).
* Readiness is "the WebUI answers at all" (403 before login), then a login, then every torrent the profile holds
  has left ``checkingResumeData``. Stdout is block-buffered when redirected, so it is never parsed.
* SIGTERM exits cleanly, but resume data is written asynchronously (~150 torrents/s here) and a SIGTERM drops
  what is still queued, so :meth:`QbtInstance.stop` first waits for it. Teardown just SIGKILLs: the profile is
  thrown away anyway.
* Free ports are picked by binding port 0. Another process can grab one between our probe and qBittorrent's bind;
  the WebUI then fails with rc 1, which :func:`launch_instance` detects and retries with new ports.

Every started process is registered; an ``atexit`` hook, and a SIGTERM handler when nobody else installed one,
kill what a crashed or timed-out run left running.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2

QBT_BINARY = "qbittorrent-nox"
MAX_TORRENTS_PER_ADD = 500  # measured fine at 500 per multipart request; the body limit is 64 MiB
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
SETTLE_TIMEOUT = 30.0
_POLL = 0.02
_T = TypeVar("_T")


class TestbedError(RuntimeError):
    """The test bed itself failed (process died, never became ready, API refused a setup call)."""

    __test__ = False  # not a test class, despite the name


# --------------------------------------------------------------------------------------------------------------
# Torrents


def bencode(value: object) -> bytes:
    """Encode ints, bytes, str, lists and dicts (keys sorted as raw bytes, as the spec requires)."""
    if isinstance(value, bool):  # bool is an int subclass and has no bencode form
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def _bdecode_end(data: bytes, pos: int) -> int:
    """Index just past the bencoded value starting at ``pos``."""
    lead = data[pos : pos + 1]
    if lead == b"i":
        return data.index(b"e", pos) + 1
    if lead in (b"l", b"d"):
        pos += 1
        while data[pos : pos + 1] != b"e":
            pos = _bdecode_end(data, pos)
        return pos + 1
    colon = data.index(b":", pos)
    return colon + 1 + int(data[pos:colon])


def info_hash(torrent: bytes) -> str:
    """The v1 info-hash (hex) of a .torrent: SHA-1 of the raw bencoded ``info`` value."""
    if torrent[:1] != b"d":
        raise ValueError("not a bencoded dict")
    pos = 1
    while torrent[pos : pos + 1] != b"e":
        key_end = _bdecode_end(torrent, pos)
        key = torrent[torrent.index(b":", pos) + 1 : key_end]
        value_end = _bdecode_end(torrent, key_end)
        if key == b"info":
            return hashlib.sha1(torrent[key_end:value_end]).hexdigest()
        pos = value_end
    raise ValueError("torrent has no info dict")


def make_torrent(name: str, size: int, *, trackers: Sequence[str] = (), seed: int) -> bytes:
    """A single-file v1 torrent with random piece hashes (no data exists), identical for equal arguments.

    qBittorrent accepts it and leaves it at 0 % (``pausedDL``, or ``stalledDL`` when started).
    """
    if size <= 0:
        raise ValueError("size must be positive")
    rng = random.Random(seed)
    piece_length = 4 * 1024 * 1024 if size > 64 * 1024 * 1024 else 256 * 1024
    pieces = rng.randbytes(20 * math.ceil(size / piece_length))
    meta: dict[str, object] = {
        "info": {"length": size, "name": name, "piece length": piece_length, "pieces": pieces},
        "created by": "qsse testbed",
    }
    if trackers:
        meta["announce"] = trackers[0]
        meta["announce-list"] = [[t] for t in trackers]
    return bencode(meta)


@dataclass(frozen=True, slots=True)
class AddedTorrent:
    """What the test bed put into an instance, to compare against what the API reports."""

    hash: str
    name: str
    size: int
    category: str  # "" = uncategorised, as qBittorrent reports it
    tags: tuple[str, ...]
    trackers: tuple[str, ...]
    paused: bool


# --------------------------------------------------------------------------------------------------------------
# Ports, passwords, config


def free_port() -> int:
    """A port that is free right now for TCP and UDP on 127.0.0.1 (the torrent port needs both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def scratch_dir(prefix: str = "qbt-") -> Path:
    """A new, short-named directory for profiles, on tmpfs when there is one (``$QSSE_TEST_TMP`` overrides).

    Short: the profile's IPC socket path must fit in sun_path (108 bytes), which pytest's ``tmp_path`` may not.
    tmpfs: qBittorrent fsyncs every resume file; on a busy disk 300 torrents took ~2.5 s to persist, on tmpfs 0.02 s.
    """
    base = os.environ.get("QSSE_TEST_TMP")
    if base is None and os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free > 256 * 2**20:
        base = "/dev/shm"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def pbkdf2_password(password: str, salt: bytes | None = None) -> str:
    """The ``WebUI\\Password_PBKDF2`` value qBittorrent 4.5+ expects (PBKDF2-SHA512, 100k rounds, 64 bytes)."""
    salt = os.urandom(16) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 100_000, dklen=64)
    return f'"@ByteArray({base64.b64encode(salt).decode()}:{base64.b64encode(key).decode()})"'


# --------------------------------------------------------------------------------------------------------------
# Instances

_LIVE: dict[int, subprocess.Popen[bytes]] = {}  # pid -> process, for the atexit safety net


@atexit.register
def _kill_leftovers() -> None:
    # A crashed or interrupted run must not leave daemons holding ports and tmp dirs.
    for proc in list(_LIVE.values()):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    _LIVE.clear()


def _on_sigterm(signum: int, frame: object) -> None:
    # Python's default SIGTERM death skips atexit, and CI timeouts send SIGTERM: clean up, then die the default way.
    _kill_leftovers()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _guard_sigterm() -> None:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no file)"


@dataclass(eq=False)
class QbtInstance:
    """One ``qbittorrent-nox`` process with its own profile directory, WebUI port and torrent port.

    Resource handling: :meth:`stop` (or the fixtures) reap the process; :meth:`client` hands out sessions the
    caller must close.
    """

    name: str
    port: int
    bt_port: int
    username: str
    password: str
    profile: Path
    #: WebUI ban policy; 0 failures disables the ban (qBittorrent's defaults are 5 and 3600 s).
    max_auth_fail_count: int = 5
    ban_duration: int = 3600
    session_timeout: int = 3600
    refresh_interval_ms: int = 250
    #: More keys, by conf section, e.g. ``{"BitTorrent": {"Session\\MultiConnectionsPerIp": "true"}}``.
    extra_conf: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    url: str = field(init=False)
    #: Every torrent :meth:`add_torrents` added, by info-hash.
    added: dict[str, AddedTorrent] = field(init=False, default_factory=dict, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None, repr=False)
    _setup: httpx2.Client | None = field(init=False, default=None, repr=False)
    _terminating: bool = field(init=False, default=False, repr=False)
    _next_index: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    # -- paths

    @property
    def conf_path(self) -> Path:
        return self.profile / "qBittorrent" / "config" / "qBittorrent.conf"

    @property
    def stdout_log(self) -> Path:
        return self.profile / "stdout.log"

    @property
    def qbt_log(self) -> Path:
        return self.profile / "qBittorrent" / "data" / "logs" / "qbittorrent.log"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle

    def _conf_text(self) -> str:
        sections: dict[str, dict[str, str]] = {
            "LegalNotice": {"Accepted": "true"},
            "BitTorrent": {
                "Session\\Port": str(self.bt_port),
                "Session\\DHTEnabled": "false",
                "Session\\LSDEnabled": "false",
                "Session\\PeXEnabled": "false",
                "Session\\Interface": "lo",
                "Session\\InterfaceName": "lo",
                "Session\\InterfaceAddress": "127.0.0.1",
                "Session\\DefaultSavePath": str(self.profile / "downloads"),
                "Session\\QueueingSystemEnabled": "false",
                "Session\\RefreshInterval": str(self.refresh_interval_ms),
            },
            "Network": {"PortForwardingEnabled": "false"},
            "Preferences": {
                "Connection\\ResolvePeerCountries": "false",
                "WebUI\\Enabled": "true",
                "WebUI\\Address": "127.0.0.1",
                "WebUI\\Port": str(self.port),
                "WebUI\\UseUPnP": "false",
                "WebUI\\LocalHostAuth": "true",
                "WebUI\\CSRFProtection": "false",
                "WebUI\\HostHeaderValidation": "false",
                "WebUI\\Username": self.username,
                "WebUI\\Password_PBKDF2": pbkdf2_password(self.password),
                "WebUI\\MaxAuthenticationFailCount": str(self.max_auth_fail_count),
                "WebUI\\BanDuration": str(self.ban_duration),
                "WebUI\\SessionTimeout": str(self.session_timeout),
            },
        }
        for section, keys in self.extra_conf.items():
            sections.setdefault(section, {}).update(keys)
        blocks = (f"[{title}]\n" + "".join(f"{k}={v}\n" for k, v in keys.items()) for title, keys in sections.items())
        return "\n".join(blocks)

    def spawn(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_ready`); lets callers start several at once."""
        if self.running:
            raise TestbedError(f"{self.name} is already running")
        self._reap()
        if not self.conf_path.exists():
            self.conf_path.parent.mkdir(parents=True, exist_ok=True)
            self.conf_path.write_text(self._conf_text())
        with self.stdout_log.open("ab") as log:
            self._proc = subprocess.Popen(
                [QBT_BINARY, f"--profile={self.profile}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # terminal signals (Ctrl-C) go to pytest, which then stops us cleanly
            )
        _LIVE[self._proc.pid] = self._proc
        _guard_sigterm()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Block until the WebUI answers, a login works and every stored torrent has been loaded."""
        deadline = time.monotonic() + timeout
        with self._new_http(timeout=5.0) as probe:
            while True:
                self._check_alive()
                try:
                    probe.get("/api/v2/app/version")
                    break
                except httpx2.TransportError:
                    self._check_deadline(deadline, "WebUI to answer")
                    time.sleep(_POLL)
        expected = self.stored_torrent_count()
        while True:
            torrents = self._torrent_states()
            if len(torrents) >= expected and "checkingResumeData" not in torrents.values():
                return
            self._check_alive()
            self._check_deadline(deadline, f"{expected} torrents to load (have {len(torrents)})")
            time.sleep(_POLL * 5)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def terminate(self) -> None:
        """Send SIGTERM without waiting, so several instances can shut down in parallel; :meth:`stop` reaps."""
        self._close_setup()
        # Only once: qBittorrent's handler resets to SIG_DFL, so a second SIGTERM would kill it mid-shutdown.
        if self._proc is not None and self._proc.poll() is None and not self._terminating:
            self._proc.send_signal(signal.SIGTERM)
            self._terminating = True

    def stop(self, timeout: float = STOP_TIMEOUT, *, flush: bool = True) -> None:
        """SIGTERM, wait, SIGKILL if needed; always reaps. A stopped instance is left alone.

        With ``flush`` it first waits until every torrent's resume data is on disk, so a later start finds all of
        them: qBittorrent writes it asynchronously (~150 torrents/s here) and a SIGTERM loses what is still queued
        (observed: 300 added, 100-279 back after a restart). Teardown passes ``flush=False``.
        """
        if flush and self.running:
            self.wait_resume_saved()
        self.terminate()
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would; still reaps."""
        self._close_setup()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            _LIVE.pop(self._proc.pid, None)
            self._proc = None
            self._terminating = False

    def _check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            rc = None if self._proc is None else self._proc.returncode
            self._close_setup()
            self._reap()
            raise TestbedError(
                f"{self.name}: qbittorrent-nox exited (rc={rc}) on port {self.port}\n"
                f"--- stdout.log\n{_tail(self.stdout_log)}\n--- qbittorrent.log\n{_tail(self.qbt_log)}"
            )

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise TestbedError(f"{self.name}: timed out waiting for {what}\n--- qbittorrent.log\n{_tail(self.qbt_log)}")

    @property
    def resume_dir(self) -> Path:
        return self.profile / "qBittorrent" / "data" / "BT_backup"

    def stored_torrent_count(self) -> int:
        """Torrents qBittorrent will load from the profile (one ``.fastresume`` each)."""
        return sum(1 for _ in self.resume_dir.glob("*.fastresume")) if self.resume_dir.exists() else 0

    def wait_resume_saved(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Block until every listed torrent has its ``.fastresume`` (written after its ``.torrent``) on disk."""
        deadline = time.monotonic() + timeout
        hashes = set(self._torrent_states())
        while True:
            missing = [h for h in hashes if not (self.resume_dir / f"{h}.fastresume").exists()]
            if not missing:
                return
            self._check_alive()
            self._check_deadline(deadline, f"resume data of {len(missing)} torrents")
            time.sleep(_POLL * 5)

    # -- HTTP

    def _login(self, http: httpx2.Client) -> None:
        r = http.post("/api/v2/auth/login", data={"username": self.username, "password": self.password})
        if r.status_code != 200 or r.text != "Ok.":
            raise TestbedError(f"{self.name}: login refused: {r.status_code} {r.text!r}")

    def _new_http(self, **kwargs: Any) -> httpx2.Client:
        # verify=False: plain HTTP, and loading the CA bundle costs ~40 ms per client.
        kwargs.setdefault("timeout", 30.0)
        return httpx2.Client(base_url=self.url, trust_env=False, verify=False, **kwargs)

    def client(self) -> httpx2.Client:
        """A NEW logged-in session (its own SID, so its own maindata rid). The caller closes it."""
        # Log in with a throwaway client: a client that has sent a request can no longer be used in ``with``.
        with self._new_http() as login:
            self._login(login)
            cookies = login.cookies
        return self._new_http(cookies=cookies)

    def _setup_request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        """A request on the bed's own long-lived session.

        Each login costs qBittorrent ~0.1 s of PBKDF2, so setup reuses one session; it logs in again if a test's
        short session timeout expired it.
        """
        for attempt in range(2):
            if self._setup is None:
                self._setup = self.client()
            r = self._setup.request(method, path, **kwargs)
            if r.status_code != 403 or attempt:
                return r
            self._close_setup()
        raise AssertionError("unreachable")

    def _close_setup(self) -> None:
        if self._setup is not None:
            self._setup.close()
            self._setup = None

    @contextlib.contextmanager
    def session(self) -> Iterator[httpx2.Client]:
        """:meth:`client` as a context manager that also logs out, so sessions do not pile up."""
        http = self.client()
        try:
            yield http
        finally:
            try:
                with contextlib.suppress(httpx2.TransportError):
                    http.post("/api/v2/auth/logout")
            finally:
                http.close()

    def maindata_full(self) -> dict[str, Any]:
        with self.session() as http:
            r = http.get("/api/v2/sync/maindata", params={"rid": 0})
            r.raise_for_status()
            data: dict[str, Any] = r.json()
            return data

    def set_password(self, new: str) -> None:
        self.set_preferences({"web_ui_password": new})
        self.password = new

    def set_preferences(self, prefs: Mapping[str, object]) -> None:
        self._setup_request("POST", "/api/v2/app/setPreferences", data={"json": json.dumps(prefs)}).raise_for_status()

    def _torrent_states(self) -> dict[str, str]:
        r = self._setup_request("GET", "/api/v2/torrents/info")
        r.raise_for_status()
        return {t["hash"]: t["state"] for t in r.json()}

    # -- torrents

    def add_torrents(
        self,
        n: int,
        *,
        category: str | None = None,
        tags: Sequence[str] = (),
        paused: bool = True,
        trackers: Sequence[str] = (),
        prefix: str = "t",
        wait: bool = True,
    ) -> list[str]:
        """Add ``n`` generated torrents (names ``<prefix><index>``) and return their info-hashes.

        With ``wait`` (the default) it returns once all of them are listed and none is ``checkingResumeData``.
        """
        made: list[tuple[str, bytes]] = []
        hashes: list[str] = []
        for _ in range(n):
            index = self._next_index
            self._next_index += 1
            name = f"{prefix}{index:04d}"
            seed = int.from_bytes(hashlib.sha256(f"{self.name}/{index}".encode()).digest()[:8], "big")
            size = random.Random(seed).randint(1, 200) * 1024 * 1024
            data = make_torrent(name, size, trackers=trackers, seed=seed)
            ih = info_hash(data)
            hashes.append(ih)
            made.append((f"{index:06d}.torrent", data))  # parts are keyed by filename: keep them unique
            self.added[ih] = AddedTorrent(
                hash=ih,
                name=name,
                size=size,
                category=category or "",
                tags=tuple(tags),
                trackers=tuple(trackers),
                paused=paused,
            )
        form = {"paused": "true" if paused else "false"}
        if category:
            form["category"] = category
        if tags:
            form["tags"] = ",".join(tags)
        for chunk in _chunks(made, MAX_TORRENTS_PER_ADD):
            files = [("torrents", (fname, data, "application/x-bittorrent")) for fname, data in chunk]
            r = self._setup_request("POST", "/api/v2/torrents/add", data=form, files=files)
            if r.status_code != 200 or r.text != "Ok.":
                raise TestbedError(f"{self.name}: torrents/add answered {r.status_code} {r.text!r}")
        if wait:
            self.wait_for_torrents(hashes)
        return hashes

    def wait_for_torrents(self, hashes: Iterable[str], timeout: float = SETTLE_TIMEOUT) -> None:
        """Block until every hash is listed and none of them is still ``checkingResumeData``."""
        wanted = set(hashes)
        deadline = time.monotonic() + timeout
        while True:
            states = self._torrent_states()
            missing = wanted - states.keys()
            if not missing and all(states[h] != "checkingResumeData" for h in wanted):
                return
            self._check_alive()
            self._check_deadline(deadline, f"{len(missing)} of {len(wanted)} torrents to appear")
            time.sleep(_POLL * 5)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def launch_instance(root: Path, *, name: str, username: str, password: str, **options: Any) -> QbtInstance:
    """Create a profile under ``root`` and start an instance on fresh ports, retrying if a port was stolen."""
    for attempt in range(3):
        profile = root / f"{name}-{attempt}" if attempt else root / name
        port = free_port()
        bt_port = free_port()
        while bt_port == port:
            bt_port = free_port()
        inst = QbtInstance(
            name=name,
            port=port,
            bt_port=bt_port,
            username=username,
            password=password,
            profile=profile,
            **options,
        )
        try:
            inst.start()
        except TestbedError as exc:
            if "Unable to bind" in str(exc) and attempt < 2:
                continue
            raise
        return inst
    raise AssertionError("unreachable")


def stop_all(instances: Iterable[QbtInstance]) -> None:
    """End instances whose profiles are about to be thrown away: SIGKILL and reap.

    A clean SIGTERM exit waits for queued resume-data writes, which took up to 8 s after adding 500 torrents on a
    busy box; nothing of the profile is needed afterwards, so teardown does not pay for it.
    """
    for inst in instances:
        inst.kill()


class QbtFactory:
    """Starts fresh instances under one directory and stops all of them on close, whatever happened."""

    def __init__(self, root: Path, *, name_prefix: str = "qbt") -> None:
        self.root = root
        self.name_prefix = name_prefix
        self.instances: list[QbtInstance] = []

    def __call__(self, torrents: int = 0, **kwargs: Any) -> QbtInstance:
        """Start an instance with ``torrents`` paused torrents; ``kwargs`` go to :class:`QbtInstance`.

        ``name``, ``username`` and ``password`` default to unique values.
        """
        n = len(self.instances)
        name = kwargs.pop("name", f"{self.name_prefix}{n}")
        username = kwargs.pop("username", f"user{n}")
        password = kwargs.pop("password", f"pw-{n}-{os.urandom(4).hex()}")
        inst = launch_instance(self.root, name=name, username=username, password=password, **kwargs)
        self.instances.append(inst)
        if torrents:
            inst.add_torrents(torrents)
        return inst

    def close(self) -> None:
        stop_all(self.instances)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def processes_using(path: Path) -> list[int]:
    """Pids of live processes using this profile, or a profile below this directory (to prove nothing was left)."""
    flag = f"--profile={path}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # Zombies have an empty cmdline; unreaped children are caught by checking their pid instead.
        if any(arg == flag or arg.startswith(flag + b"/") for arg in argv):
            pids.append(int(entry.name))
    return pids
