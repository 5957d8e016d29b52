// The client side of the stream protocol (docs/stream-protocol.md, section 8): one page of a
// view, kept by applying init / update / delta frames. No DOM here.

export function rowKey(row, aggregated) {
  return aggregated ? `${row.instance_id}:${row.hash}` : row.hash;
}

export class PageView {
  constructor() {
    this.reset();
  }

  reset() {
    this.rows = new Map(); // key → row, only the rows of the current page
    this.order = []; // keys in page order
    this.data = null; // every non-row field of the latest frame
    this.meta = null; // the latest frame's meta (its timestamp identifies a group's frame)
    this.counts = null; // kept while delta frames leave it out
    this.aggregated = false;
    this.ready = false;
  }

  // Applies a frame with `data`; returns the keys whose row changed, or null when every row
  // must be redrawn (a full frame).
  apply(payload) {
    const data = payload.data;
    if (!data) return new Set();
    const aggregated = data.isCrossInstance === true;
    const list = (aggregated ? data.cross_instance_torrents : data.torrents) || [];
    const full = payload.type !== "delta" || !this.ready || aggregated !== this.aggregated;
    this.aggregated = aggregated;
    let changed = null;
    if (full) {
      this.rows = new Map();
      this.order = [];
      for (const row of list) {
        const key = rowKey(row, aggregated);
        this.rows.set(key, row);
        this.order.push(key);
      }
      this.ready = true;
    } else {
      changed = new Set();
      for (const row of list) {
        const key = rowKey(row, aggregated);
        const old = this.rows.get(key);
        this.rows.set(key, old ? Object.assign(old, row) : row);
        changed.add(key);
      }
      const order = payload.delta && payload.delta.order;
      if (Array.isArray(order)) {
        this.order = order.slice();
        if (this.rows.size !== order.length || order.some((k) => !this.rows.has(k))) {
          const keep = new Map();
          for (const k of order) if (this.rows.has(k)) keep.set(k, this.rows.get(k));
          this.rows = keep;
        }
      }
    }
    if (data.counts !== undefined) this.counts = data.counts;
    else if (full) this.counts = null;
    this.data = data;
    this.meta = payload.meta || null;
    return changed;
  }

  visibleRows() {
    const out = [];
    for (const k of this.order) {
      const row = this.rows.get(k);
      if (row) out.push([k, row]);
    }
    return out;
  }
}
