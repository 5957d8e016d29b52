// A keyed table body: one <tr> per row key, kept across frames. Only rows reported as changed
// are compared, and within them only cells whose displayed value changed are written, so a tick
// that touches 20 of 2,000 rows costs 20 row comparisons and a handful of DOM writes.

import * as fmt from "./format.js";

const SIZE_TITLE = new Intl.NumberFormat("en-US");

function text(td, value) {
  td.textContent = value;
}

// Each column: id (also the sort field), label, value(row) → a primitive that decides whether
// the cell is repainted, paint(td, value, row).
export const COLUMNS = [
  { id: "name", label: "Name", value: (r) => r.name || r.hash, paint: (td, v) => { td.textContent = v; td.title = v; } },
  { id: "instance", label: "Instance", aggregatedOnly: true, value: (r) => r.instance_name || String(r.instance_id), paint: text },
  {
    id: "size", label: "Size", num: true, value: (r) => r.size || 0,
    paint: (td, v) => { td.textContent = fmt.bytes(v); td.title = `${SIZE_TITLE.format(v)} bytes`; },
  },
  {
    id: "progress", label: "Progress", value: (r) => Math.floor((r.progress || 0) * 1000),
    paint: (td, v) => {
      if (!td.firstChild) td.innerHTML = '<div class="bar"><div class="fill"></div><span></span></div>';
      const bar = td.firstChild;
      bar.firstChild.style.width = `${v / 10}%`;
      bar.lastChild.textContent = fmt.percent(v / 1000);
      bar.classList.toggle("done", v >= 1000);
    },
  },
  {
    id: "state", label: "State", value: (r) => r.state,
    paint: (td, v) => {
      const [label, tone] = fmt.state(v);
      td.innerHTML = "";
      const pill = document.createElement("span");
      pill.className = `pill ${tone}`;
      pill.textContent = label;
      pill.title = v;
      td.appendChild(pill);
    },
  },
  { id: "dlspeed", label: "Down", num: true, value: (r) => r.dlspeed || 0, paint: (td, v) => text(td, fmt.speed(v)) },
  { id: "upspeed", label: "Up", num: true, value: (r) => r.upspeed || 0, paint: (td, v) => text(td, fmt.speed(v)) },
  { id: "ratio", label: "Ratio", num: true, value: (r) => Math.round((r.ratio || 0) * 100), paint: (td, v) => text(td, fmt.ratio(v / 100)) },
  { id: "category", label: "Category", value: (r) => r.category || "", paint: (td, v) => { td.textContent = v; td.title = v; } },
  { id: "tags", label: "Tags", value: (r) => r.tags || "", paint: (td, v) => { td.textContent = v; td.title = v; } },
  { id: "added_on", label: "Added", num: true, value: (r) => r.added_on || 0, paint: (td, v) => text(td, fmt.date(v)) },
];

export class KeyedTable {
  constructor(tbody) {
    this.tbody = tbody;
    this.entries = new Map(); // key → {tr, cells, values}
    this.setColumns(false);
  }

  setColumns(aggregated) {
    if (this.columns && this.aggregated === aggregated) return false;
    this.aggregated = aggregated;
    this.columns = COLUMNS.filter((c) => aggregated || !c.aggregatedOnly);
    this.clear();
    const proto = document.createElement("tr");
    proto.dataset.testid = "torrent-row";
    for (const c of this.columns) {
      const td = document.createElement("td");
      td.dataset.col = c.id;
      if (c.num) td.className = "num";
      proto.appendChild(td);
    }
    this.proto = proto;
    return true;
  }

  clear() {
    this.entries.clear();
    this.tbody.textContent = "";
  }

  // rows: [key, row] in page order; changed: keys to compare, or null for all.
  render(rows, changed) {
    if (this.entries.size) {
      const wanted = new Set(rows.map(([k]) => k));
      for (const [k, e] of this.entries) {
        if (!wanted.has(k)) {
          e.tr.remove();
          this.entries.delete(k);
        }
      }
    }
    let cursor = this.tbody.firstChild;
    for (const [key, row] of rows) {
      let e = this.entries.get(key);
      if (!e) {
        const tr = this.proto.cloneNode(true);
        tr.dataset.key = key;
        e = { tr, cells: Array.from(tr.children), values: new Array(this.columns.length) };
        this.entries.set(key, e);
        this.paint(e, row);
      } else if (changed === null || changed.has(key)) {
        this.paint(e, row);
      }
      if (e.tr === cursor) cursor = cursor.nextSibling;
      else this.tbody.insertBefore(e.tr, cursor);
    }
  }

  paint(e, row) {
    const cols = this.columns;
    for (let i = 0; i < cols.length; i += 1) {
      const v = cols[i].value(row);
      if (e.values[i] !== v) {
        e.values[i] = v;
        cols[i].paint(e.cells[i], v, row);
      }
    }
  }
}
