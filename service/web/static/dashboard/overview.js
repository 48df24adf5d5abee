// Counts per status, queue depth and running against capacity, from GET /stats and then
// kept current from the feed's status events.

import { byId, clear, el } from "./dom.js";
import { STATUSES } from "./format.js";

const LABELS = {
  queued: "Queued", scheduled: "Scheduled", running: "Running",
  succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled",
};

export class Overview {
  constructor() {
    this.counts = Object.fromEntries(STATUSES.map((status) => [status, 0]));
    this.running = 0;
    this.capacity = 0;
    this.values = {};
    const list = clear(byId("counts"));
    for (const status of STATUSES) {
      this.values[status] = el("dd", { class: "count-value", text: "–" });
      list.append(el("div", { class: `count status-${status}`, attrs: { "data-status": status } },
        el("dt", { text: LABELS[status] }), this.values[status]));
    }
    this.queueDepth = byId("queue-depth");
    this.runningText = byId("running-text");
    this.meter = byId("running-meter");
  }

  /** The numbers of GET /stats. */
  apply(stats) {
    for (const status of STATUSES) this.counts[status] = stats.counts?.[status] ?? 0;
    this.running = stats.running ?? 0;
    this.capacity = stats.capacity ?? 0;
    this.render();
  }

  /**
   * A task moved from `previous` (undefined when this page had not seen it) to `next`.
   * False when the change cannot be counted here (the caller re-reads /stats).
   */
  transition(previous, next, task) {
    if (previous === next) return true;
    if (previous === undefined) {
      // Only a fresh submission is known to be new; anything else was counted elsewhere.
      if (!((next === "queued" || next === "scheduled") && task.attempts === 0)) return false;
    } else {
      this.counts[previous] = Math.max(0, this.counts[previous] - 1);
      if (previous === "running") this.running = Math.max(0, this.running - 1);
    }
    this.counts[next] += 1;
    if (next === "running") this.running += 1;
    this.render();
    return true;
  }

  /** A task of this status was deleted. */
  removed(status) {
    if (status in this.counts) this.counts[status] = Math.max(0, this.counts[status] - 1);
    this.render();
  }

  render() {
    for (const status of STATUSES) this.values[status].textContent = String(this.counts[status]);
    this.queueDepth.textContent = String(this.counts.queued + this.counts.scheduled);
    this.runningText.textContent = `${this.running} of ${this.capacity}`;
    this.meter.max = Math.max(this.capacity, 1);
    this.meter.value = Math.min(this.running, this.meter.max);
  }
}
