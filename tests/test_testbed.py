"""The test bed itself: real instances, as built, stoppable, and never left behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import httpx2
import pytest
from conftest import CATEGORIES, INVALID_TRACKER, LOOPBACK_TRACKER, PAIR_CREDENTIALS, TAGS
from testbed import QbtFactory, QbtInstance, bencode, info_hash, make_torrent, processes_using, scratch_dir

TESTS_DIR = Path(__file__).parent


def _login(url: str, username: str, password: str) -> httpx2.Response:
    with httpx2.Client(base_url=url, trust_env=False, timeout=10.0) as http:
        return http.post("/api/v2/auth/login", data={"username": username, "password": password})


def _tags(torrent: dict[str, object]) -> set[str]:
    return {t for t in str(torrent["tags"]).split(", ") if t}


def _assert_gone(pid: int | None, profile: Path) -> None:
    assert processes_using(profile) == []
    # A reaped child has no /proc entry at all; a zombie would still have one.
    assert pid is not None and not Path(f"/proc/{pid}").exists()


# -- torrents, no process needed


def test_make_torrent_is_deterministic_per_seed() -> None:
    one = make_torrent("x", 10 * 1024 * 1024, seed=7)
    assert one == make_torrent("x", 10 * 1024 * 1024, seed=7)
    assert one != make_torrent("x", 10 * 1024 * 1024, seed=8)


def test_info_hash_is_sha1_of_the_info_dict() -> None:
    data = make_torrent("name", 300 * 1024 * 1024, trackers=[LOOPBACK_TRACKER, INVALID_TRACKER], seed=1)
    pieces = data.split(b"6:pieces")[1]
    length, _, rest = pieces.partition(b":")
    assert int(length) == 20 * 75  # 300 MiB in 4 MiB pieces
    info = {"length": 300 * 1024 * 1024, "name": "name", "piece length": 4 * 1024 * 1024, "pieces": rest[: int(length)]}
    assert info_hash(data) == hashlib.sha1(bencode(info)).hexdigest()
    assert b"8:announce" + bencode(LOOPBACK_TRACKER) in data


# -- the shared pair (read-only)


def test_pair_answers_each_its_own_credentials_only(qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, b = qbt_pair
    assert (a.username, a.password) == PAIR_CREDENTIALS[0]
    assert (b.username, b.password) == PAIR_CREDENTIALS[1]
    assert a.port != b.port
    assert _login(a.url, a.username, a.password).text == "Ok."
    assert _login(b.url, b.username, b.password).text == "Ok."
    assert _login(a.url, b.username, b.password).text == "Fails."
    assert _login(b.url, a.username, a.password).text == "Fails."
    with httpx2.Client(base_url=a.url, trust_env=False) as anonymous:
        assert anonymous.get("/api/v2/app/version").status_code == 403


def test_each_client_is_a_separate_session(qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, _ = qbt_pair
    with a.client() as one, a.client() as two:
        assert one.cookies["SID"] != two.cookies["SID"]
        assert str(one.base_url).rstrip("/") == a.url
        for http in (one, two):
            assert http.get("/api/v2/app/version").text.startswith("v")
            assert http.get("/api/v2/sync/maindata", params={"rid": 0}).json()["rid"] == 1


def test_pair_holds_what_was_built(qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    for inst, expected_count in zip(qbt_pair, (300, 150), strict=True):
        data = inst.maindata_full()
        torrents = data["torrents"]
        assert len(torrents) == expected_count == len(inst.added)
        assert set(torrents) == set(inst.added)
        for ih, t in torrents.items():
            built = inst.added[ih]
            assert (t["name"], t["category"], t["size"]) == (built.name, built.category, built.size)
            assert t["state"] == "pausedDL"
            assert _tags(t) == set(built.tags)
            assert t["trackers_count"] == len(built.trackers)
        assert set(data["categories"]) == set(CATEGORIES)
        assert set(data["tags"]) == set(TAGS)
        by_category = Counter(t["category"] for t in torrents.values())
        assert set(by_category) == {*CATEGORIES, ""}
        assert Counter(len(_tags(t)) for t in torrents.values()).keys() == {0, 1, 2}
        assert set(data["trackers"]) == {LOOPBACK_TRACKER, INVALID_TRACKER}
        with_loopback = {h for h, b in inst.added.items() if LOOPBACK_TRACKER in b.trackers}
        assert set(data["trackers"][LOOPBACK_TRACKER]) == with_loopback


def test_pair_settings_are_applied(qbt_pair: tuple[QbtInstance, QbtInstance]) -> None:
    a, _ = qbt_pair
    with a.session() as http:
        prefs = http.get("/api/v2/app/preferences").json()
    assert (prefs["dht"], prefs["lsd"], prefs["pex"], prefs["upnp"], prefs["web_ui_upnp"]) == (False,) * 5
    assert (prefs["web_ui_address"], prefs["web_ui_port"], prefs["listen_port"]) == ("127.0.0.1", a.port, a.bt_port)
    assert prefs["current_network_interface"] == "lo"
    assert prefs["resolve_peer_countries"] is False
    assert (prefs["web_ui_csrf_protection_enabled"], prefs["web_ui_host_header_validation_enabled"]) == (False, False)
    assert prefs["refresh_interval"] == 250
    assert prefs["web_ui_max_auth_fail_count"] == 0  # a stray bad login in one test must not ban the others


def test_tests_using_the_bed_are_marked(
    qbt_pair: tuple[QbtInstance, QbtInstance], request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("qbt") is not None
    assert all(inst.running for inst in qbt_pair)


# -- fresh instances (mutations allowed)


def test_stop_and_restart_keep_torrents_and_drop_sessions(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory()
    with inst.client() as old:
        assert old.get("/api/v2/app/version").status_code == 200
        # Enough torrents that qBittorrent is still writing resume data when the restart begins.
        added = set(inst.add_torrents(300))
        first_pid = inst.pid
        inst.restart()
        assert inst.running and inst.pid != first_pid
        assert old.get("/api/v2/app/version").status_code == 403  # sessions live in memory only
    assert not Path(f"/proc/{first_pid}").exists()
    assert set(inst.maindata_full()["torrents"]) == added

    pid = inst.pid
    inst.stop()
    assert not inst.running
    _assert_gone(pid, inst.profile)
    with pytest.raises(httpx2.ConnectError), httpx2.Client(trust_env=False) as http:
        http.get(f"{inst.url}/api/v2/app/version")
    inst.stop()  # stopping twice is harmless

    inst.start()
    assert set(inst.maindata_full()["torrents"]) == added


def test_add_torrents_options(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory()
    paused = inst.add_torrents(3, category="new/sub", tags=["x", "y"], trackers=[LOOPBACK_TRACKER], prefix="p")
    started = inst.add_torrents(2, paused=False, prefix="p")
    torrents = inst.maindata_full()["torrents"]
    assert len(set(paused + started)) == 5 == len(torrents)
    assert {torrents[h]["name"] for h in paused + started} == {"p0000", "p0001", "p0002", "p0003", "p0004"}
    assert {(torrents[h]["category"], torrents[h]["tags"], torrents[h]["state"]) for h in paused} == {
        ("new/sub", "x, y", "pausedDL")
    }
    assert all(torrents[h]["state"] not in ("pausedDL", "checkingResumeData") for h in started)


def test_many_torrents_go_in_several_requests(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory(torrents=520)  # > 500 per multipart request
    assert len(inst.maindata_full()["torrents"]) == 520


def test_set_password_survives_restart(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory(username="carol", password="old-pw")
    inst.set_password("new-pw")
    assert inst.password == "new-pw"
    assert _login(inst.url, "carol", "old-pw").text == "Fails."
    inst.restart()  # the conf is not rewritten: qBittorrent's saved password must win
    assert _login(inst.url, "carol", "new-pw").text == "Ok."


def test_ban_settings_are_configurable(qbt_factory: QbtFactory) -> None:
    inst = qbt_factory(max_auth_fail_count=2, ban_duration=600)
    with inst.client() as existing:
        assert [_login(inst.url, inst.username, "wrong").text for _ in range(2)] == ["Fails.", "Fails."]
        banned = _login(inst.url, inst.username, inst.password)
        assert banned.status_code == 403 and "banned" in banned.text
        assert existing.get("/api/v2/app/version").status_code == 200
    inst.restart()  # bans are in memory
    assert _login(inst.url, inst.username, inst.password).text == "Ok."


def test_factory_gives_unique_instances(qbt_factory: QbtFactory) -> None:
    one, two = qbt_factory(), qbt_factory()
    assert one.port != two.port and one.bt_port != two.bt_port and one.profile != two.profile
    assert one.username != two.username and one.password != two.password
    assert _login(one.url, two.username, two.password).text == "Fails."


# -- nothing is left behind


@pytest.mark.qbt  # starts qbittorrent-nox without the fixtures
def test_factory_stops_everything_even_when_the_body_fails() -> None:
    root = scratch_dir()
    try:
        with pytest.raises(RuntimeError, match="boom"), QbtFactory(root) as factory:
            factory(torrents=2)
            factory()
            assert all(i.running for i in factory.instances)
            raise RuntimeError("boom")
        assert len(factory.instances) == 2
        for inst in factory.instances:
            assert not inst.running
            assert processes_using(inst.profile) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.qbt  # starts qbittorrent-nox without the fixtures
def test_fixture_teardown_stops_instances_of_a_failed_test(tmp_path: Path) -> None:
    """Runs a deliberately failing test that uses ``qbt_factory`` in a separate pytest, then looks for leftovers."""
    for name in ("conftest.py", "testbed.py"):
        shutil.copy(TESTS_DIR / name, tmp_path / name)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    qbt: needs real qbittorrent-nox processes\n")
    record = tmp_path / "record.json"
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            f"""
            import json

            def test_fails(qbt_factory):
                qbt_factory(torrents=2)
                qbt_factory()
                info = [(str(i.profile), i.pid) for i in qbt_factory.instances]
                with open({str(record)!r}, "w") as f:
                    json.dump(info, f)
                raise AssertionError("deliberate")
            """
        )
    )
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inner.returncode == 1, inner.stdout + inner.stderr
    assert "deliberate" in inner.stdout and "1 failed" in inner.stdout
    started = json.loads(record.read_text())
    assert len(started) == 2
    for profile, pid in started:
        _assert_gone(pid, Path(profile))
        assert not Path(profile).exists()  # the fixture removes its scratch dirs


@pytest.mark.qbt  # starts qbittorrent-nox without the fixtures
@pytest.mark.parametrize(
    ("death", "returncode"),
    [("raise SystemExit(3)", 3), ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)", -signal.SIGTERM)],
    ids=["exit", "sigterm"],
)
def test_a_dying_run_leaves_no_instance(death: str, returncode: int) -> None:
    root = scratch_dir()
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from testbed import QbtFactory
        inst = QbtFactory(Path({str(root)!r}))()
        print(inst.profile, inst.pid, flush=True)
        {death}  # no stop(): only the atexit / SIGTERM hooks can clean up
        """
    )
    try:
        crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert crashed.returncode == returncode, crashed.stderr
        profile, pid = crashed.stdout.split()
        assert Path(profile).is_dir()
        _assert_gone(int(pid), Path(profile))
    finally:
        for leftover in processes_using(root):
            os.kill(leftover, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
