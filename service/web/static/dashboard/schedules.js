// The periodic schedules (GET /schedules): each one's expression, next run, last task and
// its status, with pause and resume. No fixed-interval polling: the list is read when the
// page loads or resets, after a pause or resume, and once the earliest next run has passed
// (one timer); a feed event about a schedule's last task updates its status in place.

import { api, Unauthorized } from "./api.js";
import { byId, clear, el } from "./dom.js";
import { localTime, parseTime, serverNow, shortId, span } from "./format.js";

const SETTLE_MS = 300; // after a tick, before reading: the tick's task is being submitted
const MIN_GAP_MS = 1000; // reads the timer asks for, at most one per this
const MAX_WAIT_MS = 3_600_000; // setTimeout overflows past ~24 days; a far tick waits in steps
const RETRY_MS = 30_000; // after a read that failed
const COLUMNS = ["Name", "Task", "When", "Next run", "Last task", "Last status", "Actions"];

/** "*\/5 * * * * (Europe/Paris)" or "every 30 s". */
export function whenText(schedule) {
  if (schedule.cron != null) return `${schedule.cron} (${schedule.timezone})`;
  return `every ${schedule.every} s`;
}

/** How far off a time in the future is, for people: "in 4.2 s", "due now". */
export function untilText(time) {
  const ms = time - serverNow();
  if (ms <= 0) return "due now";
  if (ms < 1000) return "in under 1 s";
  return `in ${span(ms)}`;
}

export class Schedules {
  /** actions: {failed(error)}; linkable(): whether the caller may open schedules' tasks. */
  constructor(actions, linkable) {
    this.actions = actions;
    this.linkable = linkable;
    this.section = byId("schedules");
    this.table = byId("schedule-table"); // aria-busy while the list is being read
    this.body = byId("schedule-rows");
    this.rows = new Map(); // schedule name -> {schedule, tr, cells}
    this.reads = 0; // only the answer to the last read asked for is shown
    this.timer = null;
  }

  /** Read GET /schedules and show it. */
  async refresh() {
    const read = ++this.reads;
    this.stopTimer();
    this.table.setAttribute("aria-busy", "true");
    try {
      const { items } = await api.schedules();
      if (read === this.reads) this.show(items);
    } catch (error) {
      if (read !== this.reads) return;
      this.table.setAttribute("aria-busy", "false");
      if (!(error instanceof Unauthorized)) this.wake(RETRY_MS);
      this.actions.failed(error);
    }
  }

  /** Drop everything shown (another token's view starts afresh). */
  forget() {
    this.reads += 1;
    this.stopTimer();
    this.show([]);
  }

  show(items) {
    const names = new Set(items.map((schedule) => schedule.name));
    for (const [name, row] of this.rows) {
      if (!names.has(name)) {
        row.tr.remove();
        this.rows.delete(name);
      }
    }
    for (const schedule of items) this.upsert(schedule);
    // rows in the API's order; moved only when out of it (a moved button loses focus)
    const order = items.map((schedule) => this.rows.get(schedule.name).tr);
    if (order.some((tr, index) => this.body.children[index] !== tr)) this.body.append(...order);
    this.section.hidden = this.rows.size === 0;
    this.table.setAttribute("aria-busy", "false");
    this.planRead();
  }

  upsert(schedule) {
    let row = this.rows.get(schedule.name);
    if (!row) {
      row = this.build(schedule);
      this.rows.set(schedule.name, row);
    }
    this.update(row, schedule);
  }

  /** A task changed (from the feed): a schedule whose last task it is shows its status. */
  taskChanged(task) {
    for (const row of this.rows.values()) {
      if (row.schedule.last_task_id === task.id && row.schedule.last_status !== task.status) {
        this.update(row, { ...row.schedule, last_status: task.status });
      }
    }
  }

  /** Relative times move on (called every second). */
  tick() {
    for (const row of this.rows.values()) this.renderNextRun(row);
  }

  build(schedule) {
    const cells = {
      when: el("code", { class: "when" }),
      next: el("td", { class: "next-run", attrs: { "data-label": COLUMNS[3] } }),
      lastTask: el("td", { class: "last-task", attrs: { "data-label": COLUMNS[4] } }),
      lastStatus: el("td", { class: "last-status", attrs: { "data-label": COLUMNS[5] } }),
      button: el("button", { type: "button", class: "action pause" }),
    };
    cells.button.addEventListener("click", () => this.toggle(cells.button, schedule.name));
    const tr = el("tr", { attrs: { "data-schedule": schedule.name } },
      el("th", { scope: "row", class: "name", text: schedule.name,
        attrs: { "data-label": COLUMNS[0] } }),
      el("td", { class: "task", text: schedule.task, attrs: { "data-label": COLUMNS[1] } }),
      el("td", { attrs: { "data-label": COLUMNS[2] } }, cells.when),
      cells.next, cells.lastTask, cells.lastStatus,
      el("td", { class: "actions", attrs: { "data-label": COLUMNS[6] } }, cells.button));
    return { schedule, tr, cells, shownTask: undefined };
  }

  update(row, schedule) {
    row.schedule = schedule;
    const { cells } = row;
    row.tr.dataset.paused = String(schedule.paused);
    cells.when.textContent = whenText(schedule);
    this.renderNextRun(row);
    this.renderLastTask(row);
    const status = schedule.last_status;
    clear(cells.lastStatus).append(status
      ? el("span", { class: `badge status-${status}`, text: status }) : "—");
    const verb = schedule.paused ? "Resume" : "Pause";
    cells.button.textContent = verb;
    cells.button.setAttribute("aria-label", `${verb} schedule ${schedule.name}`);
  }

  renderNextRun(row) {
    const { schedule, cells } = row;
    if (schedule.paused) {
      if (row.nextShown !== "paused") {
        clear(cells.next).append(el("span", { class: "badge paused", text: "paused" }));
        row.nextShown = "paused";
        row.nextTime = null;
      }
      return;
    }
    const time = parseTime(schedule.next_run_at);
    if (time == null) {
      clear(cells.next).append("—");
      row.nextShown = row.nextTime = null;
      return;
    }
    if (row.nextShown !== schedule.next_run_at) {
      row.nextTime = el("time", { attrs: { datetime: schedule.next_run_at,
        title: localTime(schedule.next_run_at) } });
      clear(cells.next).append(row.nextTime);
      row.nextShown = schedule.next_run_at;
    }
    row.nextTime.textContent = untilText(time);
  }

  /** A link to the task's detail view, or its id as text when the caller cannot see it
   * (with tokens on, a schedule's tasks belong to no token). */
  renderLastTask(row) {
    const id = row.schedule.last_task_id;
    const linked = Boolean(id) && this.linkable();
    if (row.shownTask === `${linked}:${id}`) return;
    row.shownTask = `${linked}:${id}`;
    let content = "—";
    if (id && linked) {
      content = el("a", { href: `#task/${encodeURIComponent(id)}`, class: "task-link",
        text: shortId(id), attrs: { title: id,
          "aria-label": `Last task of ${row.schedule.name}, ${shortId(id)}` } });
    } else if (id) {
      content = el("span", { class: "task-id", text: shortId(id), attrs: { title: id } });
    }
    clear(row.cells.lastTask).append(content);
  }

  async toggle(button, name) {
    const row = this.rows.get(name);
    if (!row) return;
    if (button.getAttribute("aria-disabled") === "true") return; // already under way
    const pause = !row.schedule.paused;
    // aria-disabled, not disabled: a disabled button loses the keyboard focus
    button.setAttribute("aria-disabled", "true");
    try {
      const schedule = await (pause ? api.pauseSchedule(name) : api.resumeSchedule(name));
      if (this.rows.get(name) === row) this.update(row, schedule);
    } catch (error) {
      this.actions.failed(error); // a 404 says the schedule is gone: the read below drops it
    } finally {
      button.removeAttribute("aria-disabled");
    }
    await this.refresh();
  }

  /** One timer: read again once the earliest next run has passed. */
  planRead() {
    this.stopTimer();
    const times = [...this.rows.values()].filter((row) => !row.schedule.paused)
      .map((row) => parseTime(row.schedule.next_run_at)).filter((time) => time != null);
    if (!times.length) return;
    const wait = Math.min(...times) - serverNow() + SETTLE_MS;
    this.wake(Math.min(Math.max(wait, MIN_GAP_MS), MAX_WAIT_MS));
  }

  wake(ms) {
    this.stopTimer();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh();
    }, ms);
  }

  stopTimer() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
