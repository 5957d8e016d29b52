// The qsse dashboard: one EventSource carrying one view subscription plus the activity channel.
// Every URL is relative, so the page works below a reverse-proxy prefix (server.base_path).
// Frames update the model at once; the DOM is written at most once per animation frame.

import * as fmt from "./format.js";
import { PageView } from "./view.js";
import { COLUMNS, KeyedTable } from "./table.js";

const $ = (id) => document.getElementById(id);
const SEARCH_DEBOUNCE_MS = 250;
const HEALTH_POLL_MS = 5000;
const WATCHDOG_SILENCE_MS = 15000; // protocol section 2: heartbeats come every ~5 s
const MAX_ACTIVITY = 40;
const ASCENDING_FIRST = new Set(["name", "instance", "state", "category", "tags"]);

// What the user asked to see; every change re-subscribes.
const want = {
  instance: null, // an instance id, or "all"
  page: 0,
  limit: 100,
  sort: "added_on",
  order: "desc",
  search: "",
  status: null,
  category: null,
};

const page = new PageView();
const table = new KeyedTable($("torrents"), $("rows"));
let instances = []; // from healthz
const instanceErrors = new Map(); // id → {text, retryAt}
const activity = [];

// -- rendering, batched per animation frame ------------------------------------------------------

const dirty = { rows: false, changed: new Set(), full: false, summary: false, filters: false, instances: false, activity: false };
let rafId = 0;

function schedule(part) {
  dirty[part] = true;
  if (!rafId) rafId = requestAnimationFrame(flush);
}

const perf = { frames: 0, applyMs: 0, flushMs: 0, maxFlushMs: 0 };

function flush() {
  rafId = 0;
  const t0 = performance.now();
  if (dirty.rows) {
    if (table.setColumns(page.aggregated)) {
      renderHeader();
      dirty.full = true;
    }
    table.render(page.visibleRows(), dirty.full ? null : dirty.changed);
    $("empty").hidden = page.order.length > 0 || !page.ready;
    $("empty").textContent = page.data ? "No torrents match." : "No data from this view yet.";
    const grid = $("torrents");
    grid.classList.toggle("stale", !page.ready);
    // Which view the rows on screen belong to (for the tests, and a glance in the inspector).
    if (page.ready && requested) Object.assign(grid.dataset, requested);
    dirty.changed.clear();
    dirty.full = false;
  }
  if (dirty.summary) renderSummary();
  if (dirty.filters) renderFilters();
  if (dirty.instances) renderInstances();
  if (dirty.activity) renderActivity();
  dirty.rows = dirty.summary = dirty.filters = dirty.instances = dirty.activity = false;
  const spent = performance.now() - t0;
  perf.flushMs += spent;
  perf.maxFlushMs = Math.max(perf.maxFlushMs, spent);
}

function renderHeader() {
  const tr = $("header-row");
  tr.textContent = "";
  for (const c of table.columns) {
    const th = document.createElement("div");
    th.setAttribute("role", "columnheader");
    th.dataset.col = c.id;
    th.className = c.num ? "cell num" : "cell";
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.testid = `sort-${c.id}`;
    button.textContent = c.label;
    button.addEventListener("click", () => sortBy(c.id));
    th.appendChild(button);
    tr.appendChild(th);
  }
  markSort();
}

function markSort() {
  for (const th of $("header-row").children) {
    const active = th.dataset.col === want.sort;
    th.setAttribute("aria-sort", active ? (want.order === "asc" ? "ascending" : "descending") : "none");
  }
}

function renderSummary() {
  const data = page.data;
  if (!data) return;
  const stats = data.stats || {};
  const server = data.serverState;
  const down = server && !page.aggregated ? server.dl_info_speed : stats.totalDownloadSpeed;
  const up = server && !page.aggregated ? server.up_info_speed : stats.totalUploadSpeed;
  $("global-dl").textContent = fmt.speed(down || 0);
  $("global-ul").textContent = fmt.speed(up || 0);
  const library = page.counts && page.counts.status ? page.counts.status.all : undefined;
  $("global-counts").textContent = [
    library !== undefined ? `${fmt.count(library)} torrents` : null,
    `${fmt.count(stats.downloading)} downloading`,
    `${fmt.count(stats.seeding)} seeding`,
    `${fmt.count(stats.paused)} paused`,
    stats.error ? `${fmt.count(stats.error)} errored` : null,
  ].filter(Boolean).join(" · ");
  const total = data.total || 0;
  const first = total ? want.page * want.limit + 1 : 0;
  const last = want.page * want.limit + page.order.length;
  $("summary").textContent = total
    ? `${fmt.count(first)}–${fmt.count(last)} of ${fmt.count(total)}`
    : "0 torrents";
  $("summary").dataset.total = String(total);
  const pages = Math.max(1, Math.ceil(total / want.limit));
  $("page-info").textContent = `Page ${want.page + 1} of ${pages}`;
  $("prev").disabled = want.page === 0;
  $("next").disabled = !data.hasMore;
  $("partial").hidden = !data.partialResults;
  $("last-update").textContent = `updated ${fmt.clock(Date.now())}`;
}

function filterItem(list, label, count, active, onClick, testid) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.testid = testid;
  button.className = active ? "active" : "";
  button.setAttribute("aria-pressed", active ? "true" : "false");
  const name = document.createElement("span");
  name.textContent = label;
  const n = document.createElement("span");
  n.className = "n";
  n.textContent = count === undefined ? "" : fmt.count(count);
  button.append(name, n);
  button.addEventListener("click", onClick);
  li.appendChild(button);
  list.appendChild(li);
}

function renderFilters() {
  const counts = page.counts || {};
  const status = counts.status || {};
  const statusList = $("status-filters");
  statusList.textContent = "";
  for (const [name, label] of fmt.STATUS_FILTERS) {
    const active = name === "all" ? want.status === null : want.status === name;
    filterItem(statusList, label, status[name], active,
      () => setFilter("status", name === "all" || want.status === name ? null : name), `status-${name}`);
  }
  const categories = counts.categories || {};
  const catList = $("category-filters");
  catList.textContent = "";
  filterItem(catList, "All", status.all, want.category === null, () => setFilter("category", null), "category-all");
  const names = Object.keys(categories).sort((a, b) => (a === "" ? 1 : b === "" ? -1 : a.localeCompare(b)));
  if (want.category !== null && !(want.category in categories)) names.push(want.category);
  for (const name of names) {
    filterItem(catList, name === "" ? "(uncategorised)" : name, categories[name], want.category === name,
      () => setFilter("category", want.category === name ? null : name), `category-${name || "none"}`);
  }
}

function instanceName(id) {
  const inst = instances.find((i) => i.id === id);
  return inst ? inst.name : `instance ${id}`;
}

function renderInstances() {
  const box = $("instances");
  box.textContent = "";
  const now = Date.now();
  for (const inst of instances) {
    // A stream-error (with its retry time) for the instances this view depends on; for the
    // others, what healthz knows.
    const failing = inst.state === "down" || inst.state === "auth_failed";
    const err = instanceErrors.get(inst.id) || (failing && inst.lastError ? { text: inst.lastError, retryAt: 0 } : null);
    const chip = document.createElement("div");
    chip.className = "inst";
    chip.dataset.testid = `instance-status-${inst.id}`;
    chip.dataset.state = err ? (inst.state === "auth_failed" ? "auth_failed" : "down") : inst.state;
    const dot = document.createElement("i");
    dot.className = "dot";
    const name = document.createElement("b");
    name.textContent = inst.name;
    const detail = document.createElement("span");
    detail.className = "detail";
    detail.textContent = err ? "" : `${inst.state} · ${fmt.count(inst.torrents)} torrents`;
    chip.append(dot, name, detail);
    if (err) {
      const text = document.createElement("span");
      text.className = "err";
      text.dataset.testid = `instance-error-${inst.id}`;
      text.textContent = err.text;
      const retry = document.createElement("span");
      retry.className = "retry";
      retry.dataset.testid = `instance-retry-${inst.id}`;
      const left = Math.ceil((err.retryAt - now) / 1000);
      retry.textContent = err.retryAt ? (left > 0 ? `retry in ${left}s` : "retrying…") : "";
      chip.append(text, retry);
    }
    box.appendChild(chip);
  }
}

const ACTIVITY_LABELS = {
  "torrent.added": "added",
  "torrent.completed": "completed",
  "torrent.removed": "removed",
  "instance.connected": "connected",
  "instance.disconnected": "disconnected",
  "instance.auth_failed": "login refused",
  "config.reloaded": "config reloaded",
};

function renderActivity() {
  const list = $("activity");
  list.textContent = "";
  for (const a of activity) {
    const li = document.createElement("li");
    li.className = `act ${a.kind.replace(/\W/g, "-")}`;
    li.dataset.kind = a.kind;
    if (a.instanceId) li.dataset.instance = String(a.instanceId);
    const when = document.createElement("time");
    when.textContent = fmt.clock(a.at);
    const what = document.createElement("span");
    what.className = "kind";
    what.textContent = ACTIVITY_LABELS[a.kind] || a.kind;
    const subject = document.createElement("span");
    subject.className = "subject";
    subject.textContent = a.subject;
    subject.title = a.subject;
    li.append(when, what, subject);
    list.appendChild(li);
  }
}

// -- the stream ----------------------------------------------------------------------------------

let source = null;
let requested = null; // the view of the current subscription, as strings
let lastEventAt = 0;
let reopenTimer = 0;
let reopenDelay = 1000;
let probes = 0;

function setConnection(state, text) {
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = text || { live: "live", connecting: "connecting…", disconnected: "disconnected — reconnecting…" }[state];
  document.body.classList.toggle("offline", state === "disconnected");
}

function subscription() {
  const sub = { key: "dashboard", page: want.page, limit: want.limit, sort: want.sort, order: want.order };
  if (want.instance === "all") sub.instanceIds = instances.map((i) => i.id);
  else sub.instanceId = want.instance;
  if (want.search) sub.search = want.search;
  const filters = {};
  if (want.status) filters.status = [want.status];
  if (want.category !== null) filters.categories = [want.category];
  if (Object.keys(filters).length) sub.filters = filters;
  return sub;
}

function streamUrl() {
  return `stream?streams=${encodeURIComponent(JSON.stringify([subscription()]))}&activity=1`;
}

// Re-subscribing = a new EventSource with the new view; the old one is closed first, so none
// of its frames can arrive after this point.
function subscribe() {
  if (want.instance === null) return;
  closeStream();
  page.ready = false;
  requested = {
    instance: String(want.instance), sort: want.sort, order: want.order, search: want.search,
    page: String(want.page), limit: String(want.limit),
    status: want.status || "all", category: want.category === null ? "(all)" : want.category,
  };
  schedule("rows");
  markSort();
  const es = new EventSource(streamUrl());
  source = es;
  lastEventAt = Date.now();
  setConnection("connecting");
  es.onopen = () => {
    reopenDelay = 1000;
    setConnection("live");
    refreshHealth();
  };
  es.onerror = () => {
    if (source !== es) return;
    setConnection("disconnected");
    page.ready = false; // the rows dim until the init of the reconnection
    schedule("rows");
    // CONNECTING: the browser retries by itself. CLOSED: an HTTP error (503 while the daemon
    // stops, 4xx, a proxy's 502); the browser gives up, so we retry, unless the request is wrong.
    if (es.readyState === EventSource.CLOSED) probeAndReopen(es.url);
  };
  for (const type of ["init", "update", "delta"]) es.addEventListener(type, onFrame);
  es.addEventListener("stream-error", onStreamError);
  es.addEventListener("heartbeat", onAlive);
  es.addEventListener("activity", onActivity);
}

function closeStream() {
  clearTimeout(reopenTimer);
  if (source) {
    source.close();
    source = null;
  }
}

async function probeAndReopen(url) {
  closeStream();
  const generation = ++probes;
  let refusal = null;
  try {
    const controller = new AbortController();
    const response = await fetch(url, { signal: controller.signal });
    if (response.status >= 400 && response.status < 500) {
      refusal = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
      refusal.status = response.status;
    }
    controller.abort();
  } catch {
    // unreachable: retry below
  }
  if (generation !== probes || source) return; // the user re-subscribed meanwhile
  if (refusal) {
    showBanner(`The daemon refused this view: ${refusal.error}${refusal.field ? ` (${refusal.field})` : ""}`);
    setConnection("disconnected", "refused");
    if (refusal.status === 404) {
      // An instance left the configuration: fall back to the first one still there.
      want.instance = null;
      await refreshHealth();
    }
    return;
  }
  reopenTimer = setTimeout(subscribe, reopenDelay);
  reopenDelay = Math.min(reopenDelay * 2, 10000);
}

function onAlive() {
  lastEventAt = Date.now();
}

function parse(event) {
  onAlive();
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}

function onFrame(event) {
  const payload = parse(event);
  if (!payload) return;
  if (event.type === "init") {
    setConnection("live");
    showBanner(null);
  }
  const countsBefore = page.counts;
  const t0 = performance.now();
  const changed = page.apply(payload);
  perf.applyMs += performance.now() - t0;
  perf.frames += 1;
  if (changed === null) dirty.full = true;
  else for (const k of changed) dirty.changed.add(k);
  noteRecovery(payload);
  // A filter that leaves the current page empty: go to the last page that has rows.
  const total = page.data ? page.data.total || 0 : 0;
  if (page.order.length === 0 && want.page > 0 && total > 0) {
    want.page = Math.max(0, Math.ceil(total / want.limit) - 1);
    subscribe();
    return;
  }
  schedule("rows");
  schedule("summary");
  if (page.counts !== countsBefore) schedule("filters");
}

function noteRecovery(payload) {
  const data = payload.data;
  const id = payload.meta && payload.meta.instanceId;
  if (id && data.instanceMeta && data.instanceMeta.connected && instanceErrors.delete(id)) schedule("instances");
  if (!id && data.isCrossInstance && data.partialResults === false && instanceErrors.size) {
    instanceErrors.clear();
    schedule("instances");
  }
}

function onStreamError(event) {
  const payload = parse(event);
  if (!payload) return;
  const meta = payload.meta || {};
  const retryAt = meta.retryInSeconds ? Date.now() + meta.retryInSeconds * 1000 : 0;
  if (meta.instanceId) {
    // The text ends with the retry delay at the time of failure; the chip counts it down live.
    const text = (payload.error || "sync failed").replace(/;\s*retrying in \d+\s*s$/, "");
    instanceErrors.set(meta.instanceId, { text, retryAt });
    schedule("instances");
  } else {
    showBanner(payload.error || "the view could not be built");
  }
  if (!page.ready) {
    // The view could not be built at all (its instance is down): show that, not a spinner.
    page.ready = true;
    schedule("rows");
  }
}

function onActivity(event) {
  const payload = parse(event);
  if (!payload || !payload.activity) return;
  const a = payload.activity;
  const id = a.instanceId;
  let subject = id ? instanceName(id) : "";
  if (a.resourceId) {
    const row = page.rows.get(a.resourceId) || page.rows.get(`${id}:${a.resourceId}`);
    subject = row && row.name ? row.name : `${a.resourceId.slice(0, 12)}… on ${subject}`;
  }
  activity.unshift({ kind: a.kind, instanceId: id, at: a.timestamp ? Date.parse(a.timestamp) : Date.now(), subject });
  if (activity.length > MAX_ACTIVITY) activity.length = MAX_ACTIVITY;
  if (a.kind === "instance.connected" && instanceErrors.delete(id)) schedule("instances");
  if (a.kind.startsWith("instance.")) refreshHealth();
  schedule("activity");
}

function showBanner(text) {
  const banner = $("banner");
  banner.hidden = !text;
  banner.textContent = text || "";
}

// -- instances (healthz) -------------------------------------------------------------------------

let healthInFlight = false;

async function refreshHealth() {
  if (healthInFlight) return;
  healthInFlight = true;
  try {
    const response = await fetch("healthz", { cache: "no-store" });
    const body = await response.json();
    applyHealth(body.instances || []);
  } catch {
    if (!source) setConnection("disconnected");
  } finally {
    healthInFlight = false;
  }
}

function applyHealth(list) {
  const ids = (xs) => xs.map((i) => `${i.id}=${i.name}`).join(",");
  const changedSet = ids(list) !== ids(instances);
  instances = list;
  for (const inst of list) {
    if (inst.state === "syncing" && inst.lastError === null) instanceErrors.delete(inst.id);
  }
  if (changedSet) renderPicker();
  schedule("instances");
  const known = want.instance === "all" ? list.length > 0 : list.some((i) => i.id === want.instance);
  if (!known && list.length) {
    want.instance = list[0].id;
    $("instance").value = String(want.instance);
    subscribe();
  } else if (changedSet && want.instance === "all") {
    subscribe(); // the aggregated view names its members
  } else if (!source && want.instance !== null) {
    subscribe();
  }
}

function renderPicker() {
  const select = $("instance");
  select.textContent = "";
  for (const inst of instances) select.add(new Option(inst.name, String(inst.id)));
  if (instances.length > 1) select.add(new Option("All instances", "all"));
  if (want.instance !== null) select.value = String(want.instance);
}

// -- user actions --------------------------------------------------------------------------------

function sortBy(field) {
  if (want.sort === field) want.order = want.order === "asc" ? "desc" : "asc";
  else {
    want.sort = field;
    want.order = ASCENDING_FIRST.has(field) ? "asc" : "desc";
  }
  want.page = 0;
  subscribe();
}

function setFilter(kind, value) {
  want[kind] = value;
  want.page = 0;
  schedule("filters");
  subscribe();
}

function wireControls() {
  $("instance").addEventListener("change", (e) => {
    const v = e.target.value;
    want.instance = v === "all" ? "all" : Number(v);
    want.page = 0;
    if (want.sort === "instance" && want.instance !== "all") want.sort = "added_on";
    instanceErrors.clear();
    subscribe();
  });
  let debounce = 0;
  $("search").addEventListener("input", (e) => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      const text = e.target.value.trim();
      if (text === want.search) return;
      want.search = text;
      want.page = 0;
      subscribe();
    }, SEARCH_DEBOUNCE_MS);
  });
  $("prev").addEventListener("click", () => {
    if (want.page > 0) { want.page -= 1; subscribe(); }
  });
  $("next").addEventListener("click", () => {
    if (page.data && page.data.hasMore) { want.page += 1; subscribe(); }
  });
  $("limit").addEventListener("change", (e) => {
    want.limit = Number(e.target.value);
    want.page = 0;
    subscribe();
  });
}

// The browser reconnects by itself after a network error, but a connection that silently
// stopped delivering (a proxy holding it open) is only noticed by the silence.
function watchdog() {
  if (source && source.readyState === EventSource.OPEN && Date.now() - lastEventAt > WATCHDOG_SILENCE_MS) {
    setConnection("disconnected");
    subscribe();
  }
  if (instanceErrors.size) renderInstances(); // the retry countdown
}

function start() {
  renderHeader();
  renderFilters();
  wireControls();
  setConnection("connecting");
  refreshHealth();
  setInterval(refreshHealth, HEALTH_POLL_MS);
  setInterval(watchdog, 1000);
}

start();

// For the browser tests and for poking around in the console.
window.qsse = { want, page, perf, streamUrl, columns: COLUMNS };
