// Counts per status, queue depth and running against capacity, from GET /stats and then
// kept current from the feed's status events.

import { byId, clear, el } from "./dom.js";
import { learnStatuses, STATUSES, TERMINAL } from "./format.js";

const label = (status) => status.charAt(0).toUpperCase() + status.slice(1);

export class Overview {
  /** onStatuses(): the service counts statuses this page did not know (now learnt). */
  constructor(onStatuses) {
    this.onStatuses = onStatuses;
    this.counts = {};
    this.running = 0;
    this.capacity = 0;
    this.queueDepth = byId("queue-depth");
    this.runningText = byId("running-text");
    this.meter = byId("running-meter");
    this.build();
  }

  build() {
    this.values = {};
    const list = clear(byId("counts"));
    for (const status of STATUSES) {
      this.counts[status] ??= 0;
      this.values[status] = el("dd", { class: "count-value", text: "–" });
      list.append(el("div", { class: `count status-${status}`, attrs: { "data-status": status } },
        el("dt", { text: label(status) }), this.values[status]));
    }
  }

  /** The numbers of GET /stats. */
  apply(stats) {
    if (learnStatuses(Object.keys(stats.counts ?? {}))) {
      this.build();
      this.onStatuses();
    }
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
    this.counts[next] = (this.counts[next] ?? 0) + 1;
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
    for (const status of STATUSES) {
      if (this.values[status]) this.values[status].textContent = String(this.counts[status] ?? 0);
    }
    // everything not started yet: queued, scheduled, and any waiting status a service adds
    const waiting = STATUSES.filter((status) => !TERMINAL.has(status) && status !== "running");
    this.queueDepth.textContent = String(waiting.reduce((sum, s) => sum + (this.counts[s] ?? 0), 0));
    this.runningText.textContent = `${this.running} of ${this.capacity}`;
    this.meter.max = Math.max(this.capacity, 1);
    this.meter.value = Math.min(this.running, this.meter.max);
  }
}
