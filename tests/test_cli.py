"""The operator's view: config validation, `qsse check`, `qsse serve` with /healthz and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
import trio
from testbed import QbtInstance, free_port

from qsse import __version__
from qsse.config import Config, InstanceConfig, load, parse
from qsse.daemon import Daemon
from qsse.errors import ConfigError
from qsse.qbt.sync import SyncFailed

ROOT = Path(__file__).resolve().parent.parent


def qsse(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qsse", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def instance_toml(ident: int, inst: QbtInstance, password: str | None = None, **extra: str) -> str:
    lines = [
        "[[instances]]", f"id = {ident}", f'name = "{inst.name}"', f'url = "{inst.url}"',
        f'username = "{inst.username}"', f'password = "{inst.password if password is None else password}"',
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def test_example_config_is_valid_and_documents_the_defaults() -> None:
    cfg = load(ROOT / "config.example.toml")
    assert cfg.server.listen == "127.0.0.1:7476" and cfg.server.shutdown_timeout == 10
    assert cfg.sync.interval == 2.0 and cfg.sync.heartbeat == 5.0
    assert cfg.instances[0].password == "adminadmin" and cfg.instances[0].verify_tls


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[server]\nlisten = "nope"', "server.listen: must be host:port"),
        ("[server]\nshutdown_timeout = -1", "server.shutdown_timeout: must be a positive number"),
        ("[sync]\nintervall = 1", "sync.intervall: unknown key"),
        ("[sync]\ninterval = 'fast'", "sync.interval: must be a number, not a string"),
        ('[[instances]]\nid = 1\nurl = "ftp://x"', "instances[0].url: not a valid http(s) URL"),
        ('[[instances]]\nid = 0\nurl = "http://x"', "instances[0].id: must be a positive integer"),
        ('[[instances]]\nurl = "http://x"', "instances[0].id: is required"),
        ('[[instances]]\nid = 1\nurl = "http://x"\n[[instances]]\nid = 1\nurl = "http://y"',
         "instances[1].id: duplicate instance id 1"),
        ('[[instances]]\nid = 1\nurl = "http://x"\npassword = "a"\npassword_env = "B"',
         "instances[0].password_env: conflicts with password"),
        ('[[instances]]\nid = 1\nurl = "http://x"\npassword_env = "QSSE_SURELY_UNSET"',
         "instances[0].password_env: environment variable QSSE_SURELY_UNSET is not set"),
        ('[[instances]]\nid = 1\nurl = "http://x"\nbasic_auth = {password = "p"}',
         "instances[0].basic_auth.username: is required"),
        ("this is = not toml", "invalid TOML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "qsse.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("from-file\nignored\n")
    monkeypatch.setenv("QSSE_TEST_PW", "from-env")
    cfg = parse(
        {"instances": [{"id": 1, "url": "http://a", "password_file": "pw"},
                       {"id": 2, "url": "https://b/", "password_env": "QSSE_TEST_PW",
                        "basic_auth": {"username": "u", "password": "p"}}]},
        base_dir=tmp_path,
    )
    assert [i.password for i in cfg.instances] == ["from-file", "from-env"]
    assert cfg.instances[1].url == "https://b" and cfg.instances[1].basic_auth is not None
    assert "from-file" not in repr(cfg)


def test_version() -> None:
    out = qsse("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"qsse {__version__}"


def test_serve_with_bad_config_exits_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[instances]]\nid = 1\nurl = "localhost:8080"\n')
    out = qsse("serve", "-c", str(path))
    assert out.returncode == 2
    assert out.stderr.strip() == f"qsse: {path}: instances[0].url: not a valid http(s) URL"
    missing = qsse("serve", "-c", str(tmp_path / "missing.toml"))
    assert missing.returncode == 2 and "missing.toml: no such file" in missing.stderr
    assert "Traceback" not in out.stderr + missing.stderr


def test_check_against_real_instances(tmp_path: Path, qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, b = qbt_pair
    path = tmp_path / "ok.toml"
    path.write_text(instance_toml(1, a) + instance_toml(2, b))
    out = qsse("check", "-c", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["ID", "NAME", "VERSION", "WEBAPI", "TORRENTS", "RTT", "MS", "STATUS"]
    row_a, row_b = (line.split() for line in lines[1:])
    assert row_a[:5] == ["1", a.name, "v4.5.2", "2.8.19", str(len(a.added))] and row_a[-1] == "OK"
    assert row_b[:5] == ["2", b.name, "v4.5.2", "2.8.19", str(len(b.added))] and row_b[-1] == "OK"


def test_check_reports_wrong_password_and_unreachable(tmp_path: Path,
                                                      qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, _ = qbt_pair
    path = tmp_path / "bad.toml"
    port = free_port()
    path.write_text(instance_toml(1, a, password="wrong")
                    + f'[[instances]]\nid = 2\nname = "gone"\nurl = "http://127.0.0.1:{port}"\n')
    out = qsse("check", "-c", str(path))
    assert out.returncode == 1
    assert f"qBittorrent refused the credentials of user '{a.username}'" in out.stdout
    assert f"cannot connect to http://127.0.0.1:{port}" in out.stdout


def test_serve_healthz_metrics_and_sigterm(tmp_path: Path, qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, _ = qbt_pair
    port = free_port()
    path = tmp_path / "serve.toml"
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nshutdown_timeout = 5\n[sync]\ninterval = 0.5\n'
        + instance_toml(1, a, always_warm="true")
        + '[[instances]]\nid = 2\nname = "cold"\nurl = "http://127.0.0.1:1"\n'
    )
    proc = subprocess.Popen([sys.executable, "-m", "qsse", "serve", "-c", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "JOURNAL_STREAM": ""})
    try:
        health = None
        deadline = time.monotonic() + 30
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
            while time.monotonic() < deadline:
                try:
                    health = http.get("/healthz").json()
                except httpx2.TransportError:
                    health = None
                if health and health["instances"][0]["state"] == "syncing":
                    break
                time.sleep(0.1)
            assert health is not None
            warm, cold = health["instances"]
            assert health["status"] == "ok"
            assert warm["state"] == "syncing" and warm["torrents"] == len(a.added) and warm["rid"] >= 1
            assert warm["lastSuccessfulSync"].endswith("Z") and warm["lastError"] is None
            assert cold == {"id": 2, "name": "cold", "state": "idle", "torrents": 0, "rid": 0,
                            "lastSuccessfulSync": None, "lastError": None}
            metrics = http.get("/metrics").text
            assert "qsse_active_sync_loops 1" in metrics
            assert f'qsse_instance_torrents{{instance="1",name="{a.name}"}} {len(a.added)}' in metrics
            missing = http.get("/nope")
            assert missing.status_code == 404 and missing.json() == {"error": "not found"}
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        assert rc == 0 and time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "SIGTERM received" in err and "stopped" in err
    assert "Traceback" not in err


async def test_healthz_is_degraded_when_an_instance_is_down() -> None:
    daemon = Daemon(Config(instances=(InstanceConfig(id=1, name="x", url="http://127.0.0.1:1"),)))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.supervisor.run)
        events = daemon.supervisor.open_listener()
        daemon.supervisor.acquire(1)
        with trio.fail_after(10):
            failed = await events.receive()
        assert isinstance(failed, SyncFailed)
        response = await daemon.app.test_client().get("/healthz")
        body = json.loads(await response.get_data())
        nursery.cancel_scope.cancel()
    assert body["status"] == "degraded"
    assert body["instances"][0]["state"] == "down"
    assert body["instances"][0]["lastError"].startswith("Sync with qBittorrent failed (cannot connect to")


def test_serve_reports_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "busy.toml"
        path.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n')
        out = qsse("serve", "-c", str(path))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == f"qsse: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in out.stderr


def test_sighup_reloads_the_config(tmp_path: Path, qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, b = qbt_pair
    port = free_port()
    path = tmp_path / "reload.toml"
    head = f'[server]\nlisten = "127.0.0.1:{port}"\n[sync]\ninterval = 0.5\n'
    path.write_text(head + instance_toml(1, a, always_warm="true"))
    proc = subprocess.Popen([sys.executable, "-m", "qsse", "serve", "-c", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def states(http: httpx2.Client, want: list[str]) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                got = [i["state"] for i in http.get("/healthz").json()["instances"]]
            except httpx2.TransportError:
                got = []
            if got == want:
                break
            time.sleep(0.1)
        return got

    def metric(http: httpx2.Client, name: str, want: float) -> float:
        """The metric's value once it reaches ``want`` (or its last value after a deadline)."""
        value = -1.0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and value != want:
            lines = [line for line in http.get("/metrics").text.splitlines() if line.startswith(name + " ")]
            value = float(lines[0].split()[1]) if lines else -1.0
            time.sleep(0.05)
        return value

    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
            assert states(http, ["syncing"]) == ["syncing"]
            path.write_text(head + instance_toml(1, a, always_warm="true") + "[[instances]]\nid = 2\nbogus = 1\n")
            proc.send_signal(signal.SIGHUP)  # invalid: logged, the running configuration stays
            assert metric(http, "qsse_config_reload_failures_total", 1) == 1
            assert proc.poll() is None and states(http, ["syncing"]) == ["syncing"]
            path.write_text(head + instance_toml(1, a, always_warm="true") + instance_toml(2, b, always_warm="true"))
            proc.send_signal(signal.SIGHUP)
            assert states(http, ["syncing", "syncing"]) == ["syncing", "syncing"]
            assert metric(http, "qsse_config_reloads_total", 1) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "reload failed, keeping the running configuration:" in err and "instances[1].url: is required" in err
    assert "configuration reloaded from" in err
