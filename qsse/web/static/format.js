// Display helpers: pure functions from qBittorrent values to short strings.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  if (!Number.isFinite(n) || n <= 0) return "0 B";
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i += 1; }
  return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${UNITS[i]}`;
}

export function speed(n) {
  return n > 0 ? `${bytes(n)}/s` : "–";
}

export function ratio(r) {
  if (!Number.isFinite(r) || r < 0) return "–";
  return r >= 1000 ? "∞" : r.toFixed(2);
}

export function percent(p) {
  if (!Number.isFinite(p)) return "";
  return p >= 1 ? "100%" : `${(Math.floor(p * 1000) / 10).toFixed(1)}%`;
}

const pad = (n) => String(n).padStart(2, "0");

export function date(unixSeconds) {
  if (!unixSeconds || unixSeconds <= 0) return "–";
  const d = new Date(unixSeconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function count(n) {
  return Number.isFinite(n) ? n.toLocaleString("en-US") : "0";
}

// qBittorrent state → [label, tone]; tone picks the pill colour in the CSS.
const STATES = {
  downloading: ["Downloading", "down"],
  forcedDL: ["Downloading [F]", "down"],
  metaDL: ["Fetching metadata", "down"],
  forcedMetaDL: ["Fetching metadata [F]", "down"],
  allocating: ["Allocating", "down"],
  stalledDL: ["Stalled", "stalled"],
  queuedDL: ["Queued", "queued"],
  checkingDL: ["Checking", "checking"],
  uploading: ["Seeding", "up"],
  forcedUP: ["Seeding [F]", "up"],
  stalledUP: ["Seeding (idle)", "idle"],
  queuedUP: ["Queued", "queued"],
  checkingUP: ["Checking", "checking"],
  checkingResumeData: ["Checking", "checking"],
  pausedDL: ["Paused", "paused"],
  pausedUP: ["Completed", "paused"],
  stoppedDL: ["Stopped", "paused"],
  stoppedUP: ["Completed", "paused"],
  moving: ["Moving", "checking"],
  error: ["Error", "error"],
  missingFiles: ["Missing files", "error"],
  unknown: ["Unknown", "error"],
};

export function state(s) {
  return STATES[s] || [s || "?", "queued"];
}

// Status filter names of the protocol (section 8) shown in the sidebar, with their labels.
export const STATUS_FILTERS = [
  ["all", "All"],
  ["downloading", "Downloading"],
  ["seeding", "Seeding"],
  ["completed", "Completed"],
  ["paused", "Paused / stopped"],
  ["active", "Active"],
  ["inactive", "Inactive"],
  ["stalled", "Stalled"],
  ["checking", "Checking"],
  ["moving", "Moving"],
  ["errored", "Errored"],
];
