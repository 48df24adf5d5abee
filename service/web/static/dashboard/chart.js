// Throughput: tasks finished per 10 s over the last 5 min, as an SVG bar chart (succeeded
// below, failed or cancelled stacked above). Seeded from GET /tasks, then fed by the feed.

import { byId, clear, svg } from "./dom.js";
import { parseTime, serverNow, TERMINAL } from "./format.js";

export const BUCKET_MS = 10_000;
export const BUCKETS = 30;
const WINDOW_MS = BUCKET_MS * BUCKETS;
const WIDTH = 300;
const HEIGHT = 80;

export class Throughput {
  constructor() {
    this.finished = new Map(); // task id -> {at, ok}
    this.chart = byId("throughput-chart");
    this.summary = byId("throughput-summary");
    this.peak = byId("throughput-peak");
    this.lastBucket = null;
  }

  /** Start again from these tasks (recently finished ones, from GET /tasks). */
  seed(tasks) {
    this.finished.clear();
    for (const task of tasks) this.note(task);
    this.render();
  }

  /** A task changed: count it if it has just finished. */
  add(task) {
    if (this.note(task)) this.render();
  }

  note(task) {
    const at = parseTime(task.finished_at);
    if (!TERMINAL.has(task.status) || at == null || this.finished.has(task.id)) return false;
    if (at < serverNow() - WINDOW_MS) return false;
    this.finished.set(task.id, { at, ok: task.status === "succeeded" });
    return true;
  }

  /** Redraw when the newest bucket has moved on (called every second). */
  tick() {
    if (Math.floor(serverNow() / BUCKET_MS) !== this.lastBucket) this.render();
  }

  buckets() {
    const now = serverNow();
    const newest = Math.floor(now / BUCKET_MS);
    this.lastBucket = newest;
    const counts = Array.from({ length: BUCKETS }, () => ({ ok: 0, bad: 0 }));
    for (const [id, { at, ok }] of this.finished) {
      const index = BUCKETS - 1 - (newest - Math.floor(at / BUCKET_MS));
      if (index < 0) {
        this.finished.delete(id); // out of the window for good
        continue;
      }
      counts[Math.min(index, BUCKETS - 1)][ok ? "ok" : "bad"] += 1;
    }
    return counts;
  }

  render() {
    const counts = this.buckets();
    const totals = counts.map(({ ok, bad }) => ok + bad);
    const peak = Math.max(...totals);
    const scale = peak > 0 ? HEIGHT / peak : 0;
    const width = WIDTH / BUCKETS;
    const bars = [];
    counts.forEach(({ ok, bad }, index) => {
      const x = index * width + 1;
      const okHeight = ok * scale;
      const badHeight = bad * scale;
      if (ok) bars.push(svg("rect", { class: "bar-ok", x, width: width - 2,
        y: HEIGHT - okHeight, height: okHeight }));
      if (bad) bars.push(svg("rect", { class: "bar-bad", x, width: width - 2,
        y: HEIGHT - okHeight - badHeight, height: badHeight }));
    });
    const total = totals.reduce((sum, n) => sum + n, 0);
    const failed = counts.reduce((sum, { bad }) => sum + bad, 0);
    const text = `${total} finished in the last 5 minutes` + (failed ? `, ${failed} failed or cancelled` : "");
    this.summary.textContent = text;
    this.peak.textContent = peak ? `peak ${peak} per 10 s` : "";
    clear(this.chart).append(svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", role: "img",
      "aria-label": `Tasks finished per 10 seconds: ${text}`,
    }, svg("line", { class: "baseline", x1: 0, x2: WIDTH, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5 }),
    ...bars));
  }
}
