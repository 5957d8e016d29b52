// A keyed table body: one row element per row key, kept across frames. Only rows reported as
// changed are compared, and within them only cells whose displayed value changed are written, so
// a tick that touches 20 of 2,000 rows costs 20 row comparisons and a handful of DOM writes.
// Rows are CSS grid rows, not <tr>: a grid row can have `content-visibility: auto`, so the
// browser skips layout and paint of the rows scrolled out of sight (a <tr> cannot).

import * as fmt from "./format.js";

const SIZE_TITLE = new Intl.NumberFormat("en-US");

function text(td, value) {
  td.textContent = value;
}

// Each column: id (also the sort field), label, value(row) → a primitive that decides whether
// the cell is repainted, paint(td, value, row).
export const COLUMNS = [
  { id: "name", width: "minmax(180px, 1fr)", label: "Name", value: (r) => r.name || r.hash, paint: (td, v) => { td.textContent = v; td.title = v; } },
  { id: "instance", width: "140px", label: "Instance", aggregatedOnly: true, value: (r) => r.instance_name || String(r.instance_id), paint: text },
  {
    id: "size", width: "78px", label: "Size", num: true, value: (r) => r.size || 0,
    paint: (td, v) => { td.textContent = fmt.bytes(v); td.title = `${SIZE_TITLE.format(v)} bytes`; },
  },
  {
    id: "progress", width: "104px", label: "Progress", value: (r) => Math.floor((r.progress || 0) * 1000),
    paint: (td, v) => {
      if (!td.firstChild) td.innerHTML = '<div class="bar"><div class="fill"></div><span></span></div>';
      const bar = td.firstChild;
      bar.firstChild.style.width = `${v / 10}%`;
      bar.lastChild.textContent = fmt.percent(v / 1000);
      bar.classList.toggle("done", v >= 1000);
    },
  },
  {
    id: "state", width: "122px", label: "State", value: (r) => r.state,
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
  { id: "dlspeed", width: "86px", label: "Down", num: true, value: (r) => r.dlspeed || 0, paint: (td, v) => text(td, fmt.speed(v)) },
  { id: "upspeed", width: "86px", label: "Up", num: true, value: (r) => r.upspeed || 0, paint: (td, v) => text(td, fmt.speed(v)) },
  { id: "ratio", width: "56px", label: "Ratio", num: true, value: (r) => Math.round((r.ratio || 0) * 100), paint: (td, v) => text(td, fmt.ratio(v / 100)) },
  { id: "category", width: "104px", label: "Category", value: (r) => r.category || "", paint: (td, v) => { td.textContent = v; td.title = v; } },
  { id: "tags", width: "112px", label: "Tags", value: (r) => r.tags || "", paint: (td, v) => { td.textContent = v; td.title = v; } },
  { id: "added_on", width: "134px", label: "Added", num: true, value: (r) => r.added_on || 0, paint: (td, v) => text(td, fmt.date(v)) },
];

export class KeyedTable {
  constructor(grid, tbody) {
    this.grid = grid;
    this.tbody = tbody;
    this.entries = new Map(); // key → {tr, cells, values}
    this.setColumns(false);
  }

  setColumns(aggregated) {
    if (this.columns && this.aggregated === aggregated) return false;
    this.aggregated = aggregated;
    this.columns = COLUMNS.filter((c) => aggregated || !c.aggregatedOnly);
    this.clear();
    this.grid.style.setProperty("--columns", this.columns.map((c) => c.width).join(" "));
    const proto = document.createElement("div");
    proto.className = "row";
    proto.setAttribute("role", "row");
    proto.dataset.testid = "torrent-row";
    for (const c of this.columns) {
      const td = document.createElement("div");
      td.setAttribute("role", "cell");
      td.dataset.col = c.id;
      td.className = c.num ? "cell num" : "cell";
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
