"""Fixtures backed by real qbittorrent-nox processes (see testbed.py). Tests using them are marked ``qbt``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from testbed import QbtFactory, QbtInstance, launch_instance, scratch_dir, stop_all

QBT_FIXTURES = frozenset({"qbt_pair", "qbt_factory"})

CATEGORIES = ("movies", "tv", "tv/anime", "linux")
TAGS = ("hd", "4k", "fav", "archive", "to-watch", "x265")
LOOPBACK_TRACKER = "http://127.0.0.1:1/announce"  # nothing listens there
INVALID_TRACKER = "http://tracker.invalid:6969/announce"  # .invalid never resolves

#: What ``qbt_pair`` builds in instance A: (count, category or None, tags, trackers, name prefix).
#: Instance B gets the same groups at half the count. All torrents are paused.
PAIR_PLAN: tuple[tuple[int, str | None, tuple[str, ...], tuple[str, ...], str], ...] = (
    (30, "movies", (), (), "Movie."),
    (24, "movies", ("hd",), (), "Movie."),
    (16, "movies", ("hd", "4k"), (), "Movie."),
    (10, "movies", ("fav",), (LOOPBACK_TRACKER,), "Movie."),
    (30, "tv", (), (), "Show."),
    (20, "tv", ("to-watch",), (), "Show."),
    (10, "tv", ("hd", "to-watch"), (INVALID_TRACKER,), "Show."),
    (20, "tv/anime", ("x265",), (), "Anime."),
    (20, "tv/anime", ("x265", "fav"), (), "Anime."),
    (30, "linux", (), (INVALID_TRACKER,), "Linux."),
    (10, "linux", ("archive",), (LOOPBACK_TRACKER, INVALID_TRACKER), "Linux."),
    (50, None, (), (), "Misc."),
    (20, None, ("archive",), (), "Misc."),
    (10, None, ("archive", "fav"), (LOOPBACK_TRACKER,), "Misc."),
)
PAIR_CREDENTIALS = (("alice", "alice-pw-1"), ("bob", "bob-pw-2"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if QBT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.qbt)


@pytest.fixture(scope="session")
def qbt_pair() -> Iterator[tuple[QbtInstance, QbtInstance]]:
    """Two running instances, A (~300 torrents) and B (~150), with different credentials. Do not mutate them.

    Failed logins never ban here (``max_auth_fail_count=0``), so one test's bad password cannot lock out the rest.
    What was added is in ``inst.added``.
    """
    root = scratch_dir("qbt-pair-")
    instances: list[QbtInstance] = []
    try:
        for name, (user, pw) in zip(("a", "b"), PAIR_CREDENTIALS, strict=True):
            instances.append(launch_instance(root, name=name, username=user, password=pw, max_auth_fail_count=0))
        a, b = instances
        for inst, divisor in ((a, 1), (b, 2)):
            for count, category, tags, trackers, prefix in PAIR_PLAN:
                inst.add_torrents(
                    count // divisor, category=category, tags=tags, trackers=trackers, prefix=prefix, wait=False
                )
        for inst in instances:
            inst.wait_for_torrents(inst.added)
        yield a, b
    finally:
        try:
            stop_all(instances)
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def qbt_factory() -> Iterator[QbtFactory]:
    """``factory(torrents=0, **kwargs) -> QbtInstance``: fresh running instances, all stopped after the test.

    ``kwargs`` go to :class:`testbed.QbtInstance` (``name``, ``username``, ``password``, ``max_auth_fail_count``,
    ``ban_duration``, ``session_timeout``, ``refresh_interval_ms``, ``extra_conf``).
    """
    root = scratch_dir()
    try:
        with QbtFactory(root) as factory:
            yield factory
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[float, ...]]:
    """Real processes, real time: a short failure backoff (its shape is tested under MockClock).

    Whole seconds, because ``retryInSeconds`` is an integer on the wire.
    """
    import qsse.qbt.sync as sync_mod

    schedule = (1.0, 2.0, 3.0, 4.0)
    monkeypatch.setattr(sync_mod, "FAILURE_BACKOFF", schedule)
    yield schedule
