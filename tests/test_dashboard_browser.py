"""The built-in dashboard in a real browser: Debian's Chromium driven by Playwright's sync API.

The daemon and its two simulated qBittorrent instances run in a subprocess (``qsse demo``):
Playwright's sync API runs its own event loop, which must not meet pytest-trio's, and a real
process is also what lets a test stop the daemon and start it again on the same port. These
tests are plain (non-async) functions for the same reason.
"""

from __future__ import annotations

import http.cookiejar
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking switches Chromium keeps calling Google, which a closed
# network refuses noisily.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
STARTED = re.compile(r"dashboard at (\S+?)/?\s+\(simulated qBittorrent at (\S+) and (\S+?);")
START_TIMEOUT = 60.0
LIVE_TIMEOUT_MS = 20_000  # a first frame; the demo syncs every second, the machine may be busy

ROWS = "[data-testid=torrent-row]"
TABLE = "[data-testid=torrent-table]"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Demo:
    """``qsse demo`` in a subprocess, on a port that stays the same across restarts."""

    workdir: Path
    port: int = field(default_factory=_free_port)
    url: str = ""
    simulators: tuple[str, str] = ("", "")
    command: tuple[str, ...] = (sys.executable, "-m", "qsse", "demo")
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log_path = self.workdir / f"demo-{self.port}-{self.starts}.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.command, "--port", str(self.port), "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = STARTED.search(log_path.read_text(errors="replace"))
            if match:
                self.url = match[1] + "/"
                self.simulators = (match[2], match[3])
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"qsse demo did not start on port {self.port}:\n{log_path.read_text(errors='replace')}")

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# The demo with a switch on its second simulated instance: SIGUSR1 takes it off the network,
# SIGUSR2 brings it back on the same port (its library and sessions intact), so a test can
# watch an instance fail and recover. Same announcement line as ``qsse demo``.
SWITCHABLE_DEMO = """
import argparse, dataclasses, signal, trio
from qsse.daemon import Daemon
from qsse.demo import demo_config
from qsse.sim.server import SimulatedQbt

async def main(port, base_path):
    first = SimulatedQbt(torrents=300, dialect="4", seed=1)
    second = SimulatedQbt(torrents=100, dialect="5", seed=2)
    async with trio.open_nursery() as nursery:
        port_a = await nursery.start(first.run)
        scope = trio.CancelScope()

        async def serve_second(scope, port, task_status=trio.TASK_STATUS_IGNORED):
            with scope:
                await second.run(port=port, task_status=task_status)

        port_b = await nursery.start(serve_second, scope, 0)
        config = demo_config((port_a, port_b), listen_port=port)
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, base_path=base_path))
        bound = await nursery.start(Daemon(config).run)
        print(f"dashboard at {bound[0]}{base_path}/  (simulated qBittorrent at {first.url} and {second.url};",
              flush=True)
        with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM) as signals:
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    scope.cancel()
                elif signum == signal.SIGUSR2:
                    scope = trio.CancelScope()
                    await nursery.start(serve_second, scope, port_b)
                else:
                    nursery.cancel_scope.cancel()

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--base-path", default="")
parser.add_argument("--log-level")
args = parser.parse_args()
trio.run(main, args.port, args.base_path)
"""


def _demo(tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Iterator[Demo]:
    demo = Demo(tmp_path_factory.mktemp("demo"), **options)
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    yield from _demo(tmp_path_factory)


@pytest.fixture
def own_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """A demo that the test may stop and restart without disturbing the others."""
    yield from _demo(tmp_path_factory)


@pytest.fixture
def switchable_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    yield from _demo(tmp_path_factory, command=(sys.executable, "-c", SWITCHABLE_DEMO))


@pytest.fixture
def prefixed_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The daemon with ``server.base_path = "/qsse"``, as behind a reverse proxy."""
    yield from _demo(tmp_path_factory, command=(sys.executable, "-c", SWITCHABLE_DEMO, "--base-path", "/qsse"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    # An uncaught exception in the dashboard's JavaScript fails the test that caused it.
    assert errors == []


def _open(page: Page, demo: Demo) -> None:
    page.goto(demo.url)
    expect(page.locator(ROWS)).to_have_count(100, timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name)


def _total(page: Page) -> int:
    return int(page.get_by_test_id("summary").get_attribute("data-total") or "-1")


def _qbt_post(base_url: str, path: str, form: dict[str, str]) -> None:
    """One logged-in WebUI action on a simulated qBittorrent (admin / adminadmin)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    login = urllib.parse.urlencode({"username": "admin", "password": "adminadmin"}).encode()
    with opener.open(f"{base_url}/api/v2/auth/login", data=login, timeout=10) as response:
        assert response.read() == b"Ok."
    with opener.open(f"{base_url}/api/v2/{path}", data=urllib.parse.urlencode(form).encode(), timeout=10) as response:
        assert response.status == 200


def test_page_loads_with_live_rows_and_both_instances(page: Page, demo: Demo) -> None:
    _open(page, demo)
    expect(page.locator(TABLE)).to_have_attribute("data-instance", "1")
    assert _total(page) >= 1900  # 2,000 simulated torrents, a few added or removed since
    expect(page.get_by_test_id("instance-picker").locator("option")).to_have_text(
        ["seedbox (simulated 4.x)", "nas (simulated 5.x)", "All instances"])
    expect(page.get_by_test_id("instance-status-1")).to_have_attribute("data-state", "syncing")
    expect(page.get_by_test_id("instance-status-2")).to_have_attribute("data-state", "syncing")
    expect(page.get_by_test_id("global-dl")).to_have_text(re.compile(r"/s$"))
    expect(page.get_by_test_id("status-downloading")).to_contain_text(re.compile(r"\d"))
    first = page.locator(ROWS).first
    expect(first.locator("[data-col=name]")).not_to_be_empty()
    expect(first.locator("[data-col=size]")).to_have_text(re.compile(r"B$"))
    expect(first.locator("[data-col=progress]")).to_have_text(re.compile(r"%$"))
    _screenshot(page, "dashboard.png")


def test_rename_in_qbittorrent_shows_on_screen(page: Page, demo: Demo) -> None:
    _open(page, demo)
    row = page.locator(ROWS).nth(3)
    key = row.get_attribute("data-key")
    assert key is not None and re.fullmatch(r"[0-9a-f]{40}", key)
    new_name = f"renamed by the browser test {uuid.uuid4().hex[:8]}"

    _qbt_post(demo.simulators[0], "torrents/rename", {"hash": key, "name": new_name})

    # The next sync (every second) carries it; the delta frame repaints only that row.
    expect(page.locator(f"{ROWS}[data-key='{key}'] [data-col=name]")).to_have_text(new_name, timeout=10_000)


def test_search_narrows_the_rows(page: Page, demo: Demo) -> None:
    _open(page, demo)
    target = page.locator(ROWS).nth(10)
    key = target.get_attribute("data-key")
    name = target.locator("[data-col=name]").text_content() or ""

    page.get_by_test_id("search").fill(name)

    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-search", name, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(f"{ROWS}[data-key='{key}']")).to_have_count(1)
    shown = page.locator(ROWS).count()
    assert 1 <= shown == _total(page) < 20

    page.get_by_test_id("search").fill("")
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-search", "", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(ROWS)).to_have_count(100)


def _sizes(page: Page) -> list[int]:
    titles: list[str] = page.locator(f"{ROWS} [data-col=size]").evaluate_all("els => els.map(e => e.title)")
    return [int(re.sub(r"\D", "", t)) for t in titles]


def test_clicking_a_header_sorts(page: Page, demo: Demo) -> None:
    _open(page, demo)
    header = page.locator("[role=columnheader][data-col=size]")

    page.get_by_test_id("sort-size").click()
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-sort", "size", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(TABLE)).to_have_attribute("data-order", "desc")
    expect(header).to_have_attribute("aria-sort", "descending")
    sizes = _sizes(page)
    assert len(sizes) == 100 and sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]

    page.get_by_test_id("sort-size").click()
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-order", "asc", timeout=LIVE_TIMEOUT_MS)
    expect(header).to_have_attribute("aria-sort", "ascending")
    sizes = _sizes(page)
    assert len(sizes) == 100 and sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_all_instances_shows_rows_of_both(page: Page, demo: Demo) -> None:
    _open(page, demo)
    expect(page.locator("[role=columnheader][data-col=instance]")).to_have_count(0)

    page.get_by_test_id("instance-picker").select_option("all")

    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-instance", "all", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("[role=columnheader][data-col=instance]")).to_have_count(1)
    expect(page.locator(ROWS)).to_have_count(100)
    names = set(page.locator(f"{ROWS} [data-col=instance]").all_text_contents())
    assert names == {"seedbox (simulated 4.x)", "nas (simulated 5.x)"}
    assert _total(page) >= 2200  # 2,000 + 300
    keys = page.locator(ROWS).evaluate_all("els => els.map(e => e.dataset.key)")
    assert all(re.fullmatch(r"[12]:[0-9a-f]{40}", k) for k in keys)


def test_filters_by_status_and_category(page: Page, demo: Demo) -> None:
    _open(page, demo)
    page.get_by_test_id("status-downloading").click()
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-status", "downloading",
                                                                   timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_test_id("status-downloading")).to_have_attribute("aria-pressed", "true")
    states = set(page.locator(f"{ROWS} [data-col=state] .pill").evaluate_all("els => els.map(e => e.title)"))
    assert states and states <= {"downloading", "stalledDL", "metaDL", "queuedDL", "allocating", "checkingDL",
                                 "forcedDL"}

    page.get_by_test_id("category-linux").click()
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-category", "linux",
                                                                   timeout=LIVE_TIMEOUT_MS)
    categories = set(page.locator(f"{ROWS} [data-col=category]").all_text_contents())
    assert categories == {"linux"}
    assert _total(page) < 200


def test_stopping_the_daemon_shows_disconnected_then_recovers(page: Page, own_demo: Demo) -> None:
    _open(page, own_demo)
    connection = page.get_by_test_id("connection")

    own_demo.stop()
    expect(connection).to_have_attribute("data-state", "disconnected", timeout=15_000)
    expect(connection).to_contain_text("disconnected")
    expect(connection).to_contain_text("reconnecting")
    _screenshot(page, "dashboard-disconnected.png")

    own_demo.start()  # the same port
    expect(connection).to_have_attribute("data-state", "live", timeout=30_000)
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(ROWS)).to_have_count(100)
    expect(page.get_by_test_id("instance-status-1")).to_have_attribute("data-state", "syncing")


def test_instance_failure_shows_error_and_retry_countdown_then_recovers(page: Page, switchable_demo: Demo) -> None:
    demo = switchable_demo
    page.goto(demo.url)
    page.get_by_test_id("instance-picker").select_option("all")
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-instance", "all", timeout=LIVE_TIMEOUT_MS)
    status = page.get_by_test_id("instance-status-2")
    expect(status).to_have_attribute("data-state", "syncing")

    demo.signal(signal.SIGUSR1)  # the second simulated qBittorrent goes away

    expect(status).to_have_attribute("data-state", "down", timeout=15_000)
    expect(page.get_by_test_id("instance-error-2")).to_contain_text("Sync with qBittorrent failed")
    retry = page.get_by_test_id("instance-retry-2")
    expect(retry).to_have_text(re.compile(r"^retry in \d+s$"))
    before = retry.text_content()
    expect(retry).not_to_have_text(before or "", timeout=3_000)  # it counts down, second by second
    expect(page.get_by_test_id("instance-status-1")).to_have_attribute("data-state", "syncing")
    feed = page.get_by_test_id("activity-feed")
    expect(feed.locator("[data-kind='instance.disconnected'][data-instance='2']")).to_have_count(1)
    reconnected = feed.locator("[data-kind='instance.connected'][data-instance='2']")
    connected_before = reconnected.count()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")  # the daemon is fine
    _screenshot(page, "dashboard-instance-down.png")
    # A view of the other instance gets no stream-error for this one: healthz still tells.
    page.get_by_test_id("instance-picker").select_option("1")
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-instance", "1", timeout=LIVE_TIMEOUT_MS)
    expect(status).to_have_attribute("data-state", "down", timeout=10_000)
    expect(page.get_by_test_id("instance-error-2")).to_contain_text("Sync with qBittorrent failed")
    page.get_by_test_id("instance-picker").select_option("all")

    demo.signal(signal.SIGUSR2)  # back on the same port

    expect(status).to_have_attribute("data-state", "syncing", timeout=45_000)  # after the backoff
    expect(page.get_by_test_id("instance-error-2")).to_have_count(0)
    expect(reconnected).to_have_count(connected_before + 1)


def test_works_below_a_base_path(page: Page, prefixed_demo: Demo) -> None:
    assert prefixed_demo.url.endswith("/qsse/")
    try:
        with urllib.request.urlopen(prefixed_demo.url + "healthz", timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    assert status == 200
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    page.goto(prefixed_demo.url.removesuffix("/"))  # "/qsse" as typed: the page adds the slash

    expect(page.locator(ROWS)).not_to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("instance-status-1")).to_have_attribute("data-state", "syncing")
    paths = {urllib.parse.urlsplit(url).path for url in requests if url.startswith("http")}
    assert {"/qsse/static/app.js", "/qsse/healthz", "/qsse/stream"} <= paths
    assert [path for path in paths if path != "/qsse" and not path.startswith("/qsse/")] == []


# The client's delta rule (protocol section 8) on hand-made frames, in the page's own module.
APPLY_FRAMES = """async () => {
  const { PageView } = await import("./static/view.js");
  const v = new PageView();
  const row = (hash, name, extra = {}) => ({ hash, name, size: 1, ...extra });
  const out = [];
  const snap = () => out.push({ order: [...v.order], names: v.order.map((k) => v.rows.get(k).name),
                                counts: v.counts, total: v.data.total, rows: v.rows.size });
  v.apply({ type: "init", data: { torrents: [row("a", "A"), row("b", "B")], total: 2, counts: { n: 1 } } });
  snap();
  // a changed row, no order: upsert in place, counts absent = unchanged
  v.apply({ type: "delta", data: { torrents: [row("b", "B2")], total: 2 }, delta: {} });
  snap();
  // a new row and a new order; a row that left the page is forgotten
  v.apply({ type: "delta", data: { torrents: [row("c", "C")], total: 3, counts: { n: 2 } },
            delta: { order: ["c", "b"] } });
  snap();
  // "order": [] empties the page
  v.apply({ type: "delta", data: { torrents: [], total: 0 }, delta: { order: [] } });
  snap();
  // an update (full frame) replaces everything
  v.apply({ type: "update", data: { torrents: [row("d", "D")], total: 1, counts: { n: 3 } } });
  snap();
  // aggregated rows are keyed by instance and hash
  v.apply({ type: "init", data: { torrents: null, isCrossInstance: true, total: 2, counts: {},
            cross_instance_torrents: [row("a", "A1", { instance_id: 1 }), row("a", "A2", { instance_id: 2 })] } });
  snap();
  return out;
}"""


def test_client_applies_delta_frames_per_protocol(page: Page, demo: Demo) -> None:
    page.goto(demo.url)
    steps = page.evaluate(APPLY_FRAMES)
    assert steps == [
        {"order": ["a", "b"], "names": ["A", "B"], "counts": {"n": 1}, "total": 2, "rows": 2},
        {"order": ["a", "b"], "names": ["A", "B2"], "counts": {"n": 1}, "total": 2, "rows": 2},
        {"order": ["c", "b"], "names": ["C", "B2"], "counts": {"n": 2}, "total": 3, "rows": 2},
        {"order": [], "names": [], "counts": {"n": 2}, "total": 0, "rows": 0},
        {"order": ["d"], "names": ["D"], "counts": {"n": 3}, "total": 1, "rows": 1},
        {"order": ["1:a", "2:a"], "names": ["A1", "A2"], "counts": {}, "total": 2, "rows": 2},
    ]


# A second subscription to the same view joins the same group: its init is the group's
# baseline, and from then on both receive the same frames (same meta.timestamp). Once both have
# applied the same frame, the page's state, built from an old init and many deltas, must equal
# the probe's, built from a fresh init.
COMPARE_WITH_FRESH_INIT = """async ([timeoutMs, ignored]) => {
  const { PageView } = await import("./static/view.js");
  const main = window.qsse.page;
  const probe = new PageView();
  let probeFrames = 0;
  const es = new EventSource(window.qsse.streamUrl());
  const onFrame = (e) => { probe.apply(JSON.parse(e.data)); probeFrames += 1; };
  for (const type of ["init", "update", "delta"]) es.addEventListener(type, onFrame);
  const skip = new Set(ignored);
  const canonical = (value) => JSON.stringify(value, (k, v) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).filter(([f]) => !skip.has(f)).sort()) : v);
  const state = (v) => canonical({ order: v.order, rows: v.order.map((k) => v.rows.get(k)), counts: v.counts,
                                   total: v.data.total, hasMore: v.data.hasMore, stats: v.data.stats });
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (probeFrames > 1 && main.meta && probe.meta && main.meta.timestamp === probe.meta.timestamp) {
        const differences = [];
        if (canonical(main.order) !== canonical(probe.order)) differences.push("order");
        for (const key of ["counts"]) if (canonical(main[key]) !== canonical(probe[key])) differences.push(key);
        for (const key of ["total", "hasMore", "stats"]) {
          if (canonical(main.data[key]) !== canonical(probe.data[key])) differences.push(key);
        }
        for (const k of main.order) {
          const a = main.rows.get(k), b = probe.rows.get(k);
          if (!b) { differences.push(`${k}: missing`); continue; }
          for (const f of new Set([...Object.keys(a), ...Object.keys(b)].filter((f) => !skip.has(f)))) {
            const [x, y] = [canonical(a[f]), canonical(b[f])];
            if (x !== y) differences.push(`${k}.${f}: ${x} != ${y}`);
          }
        }
        return { same: state(main) === state(probe), differences: differences.slice(0, 20),
                 rows: main.order.length, frames: window.qsse.perf.frames };
      }
    }
    return { same: null, rows: main.order.length, frames: window.qsse.perf.frames };
  } finally {
    es.close();
  }
}"""


def test_client_state_after_many_deltas_equals_a_fresh_init(page: Page, demo: Demo) -> None:
    _open(page, demo)
    page.get_by_test_id("page-size").select_option("2000")
    expect(page.locator(f"{TABLE}:not(.stale)")).to_have_attribute("data-limit", "2000", timeout=LIVE_TIMEOUT_MS)
    frames_at_init = page.evaluate("window.qsse.perf.frames")
    page.wait_for_function(f"window.qsse.perf.frames >= {frames_at_init + 5}", timeout=30_000)  # 5 deltas

    # Every field, volatile ones included: the joiner's init is the baseline the members hold.
    result = page.evaluate(COMPARE_WITH_FRESH_INIT, [20_000, []])

    assert result["same"] is True, result
    assert result["rows"] >= 1900
    expect(page.locator(ROWS)).to_have_count(result["rows"])
