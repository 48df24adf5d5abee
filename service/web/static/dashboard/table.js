// The table of recent tasks: filtered by status and name, paginated with the API's cursor,
// updated in place by the feed (new tasks appear at the top of the first page).

import { api } from "./api.js";
import { byId, clear, el } from "./dom.js";
import { ACTIVE, age, duration, parseTime, progressOf, shortId, STATUSES, TERMINAL } from "./format.js";

export const PAGE_SIZE = 20;
const MAX_LIVE_ROWS = PAGE_SIZE * 5; // the first page grows with new tasks up to this
const COLUMNS = ["Name", "Status", "Progress", "Age", "Duration", "Actions"];

export class TaskTable {
  /** actions: {cancel(task), remove(task)}; both return promises. */
  constructor(actions) {
    this.actions = actions;
    this.table = byId("task-table"); // aria-busy while a page is being read
    this.body = byId("task-rows");
    this.empty = byId("tasks-empty");
    this.statusFilter = byId("filter-status");
    this.nameFilter = byId("filter-name");
    this.newer = byId("page-newer");
    this.older = byId("page-older");
    this.pageLabel = byId("page-label");
    this.rows = new Map(); // task id -> {task, tr, cells}
    this.cursors = [null]; // the cursor of each page up to the current one
    this.nextCursor = null;
    this.loads = 0; // pages asked for: only the last one asked for is shown
    this.statusFilter.addEventListener("change", () => this.firstPage());
    this.nameFilter.addEventListener("change", () => this.firstPage());
    this.newer.addEventListener("click", () => this.turn(-1));
    this.older.addEventListener("click", () => this.turn(1));
    this.renderStatuses();
  }

  /** One option per status (again when a service counts one this page did not know). */
  renderStatuses() {
    for (const option of [...this.statusFilter.options].slice(3)) option.remove();
    for (const value of STATUSES) this.statusFilter.append(el("option", { value, text: value }));
  }

  /** The task types the name filter offers. */
  setNames(names) {
    const chosen = this.nameFilter.value;
    clear(this.nameFilter).append(el("option", { value: "", text: "All task types" }),
      ...names.map((name) => el("option", { value: name, text: name })));
    if (names.includes(chosen)) this.nameFilter.value = chosen;
  }

  get statuses() {
    const value = this.statusFilter.value;
    if (value === "active") return [...ACTIVE];
    if (value === "finished") return [...TERMINAL];
    return value ? [value] : [];
  }

  get onFirstPage() {
    return this.cursors.length === 1;
  }

  matches(task) {
    const statuses = this.statuses;
    const name = this.nameFilter.value;
    return (!statuses.length || statuses.includes(task.status)) && (!name || task.name === name);
  }

  /** GET /tasks for the current page and filters (not shown yet: see show()). */
  async fetchPage() {
    const load = ++this.loads;
    this.table.setAttribute("aria-busy", "true");
    try {
      const page = await api.list({ status: this.statuses, name: this.nameFilter.value,
        limit: PAGE_SIZE, cursor: this.cursors.at(-1) });
      return { ...page, load };
    } catch (error) {
      if (load === this.loads) this.table.setAttribute("aria-busy", "false");
      throw error;
    }
  }

  /** Show a page; tasks in `fresher` (changed by the feed meanwhile) win over the page's.
   * A page asked for before another one (filters changed meanwhile) is not shown. */
  show(page, fresher = new Map()) {
    if (page.load !== undefined && page.load !== this.loads) return;
    this.table.setAttribute("aria-busy", "false");
    this.nextCursor = page.next_cursor;
    clear(this.body);
    this.rows.clear();
    for (const task of page.items) this.place(fresher.get(task.id) ?? task, false);
    for (const task of fresher.values()) if (!this.rows.has(task.id)) this.upsert(task);
    this.renderPager();
  }

  async reload() {
    this.show(await this.fetchPage());
  }

  firstPage() {
    this.cursors = [null];
    return this.reload().catch((error) => this.actions.failed(error));
  }

  turn(step) {
    if (step > 0 && this.nextCursor) this.cursors.push(this.nextCursor);
    else if (step < 0 && this.cursors.length > 1) this.cursors.pop();
    else return;
    this.reload().catch((error) => this.actions.failed(error));
  }

  renderPager() {
    this.empty.hidden = this.rows.size > 0;
    this.newer.disabled = this.onFirstPage;
    this.older.disabled = !this.nextCursor;
    this.pageLabel.textContent = `Page ${this.cursors.length}`;
  }

  /** A task from the feed or an action: update its row, add it, or drop it. */
  upsert(task) {
    const row = this.rows.get(task.id);
    if (row && !this.matches(task)) return this.remove(task.id);
    if (row) return this.update(row, task);
    if (!this.matches(task) || !this.belongsHere(task)) return;
    this.place(task, true);
    if (this.rows.size > MAX_LIVE_ROWS) this.firstPage();
    this.renderPager();
  }

  /** Whether a task not shown belongs on this page (newest first): the first page takes
   * anything newer than its oldest row, the last page anything older than its newest. */
  belongsHere(task) {
    const created = parseTime(task.created_at) ?? 0;
    const times = [...this.rows.values()].map((row) => parseTime(row.task.created_at) ?? 0);
    const newest = times.length ? Math.max(...times) : Infinity;
    const oldest = times.length ? Math.min(...times) : -Infinity;
    return (this.onFirstPage || created <= newest) && (!this.nextCursor || created >= oldest);
  }

  remove(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.tr.remove();
    this.rows.delete(id);
    this.renderPager();
  }

  /** Insert a row where its creation time puts it (newest first), or at the end. */
  place(task, sorted) {
    const row = this.build(task);
    this.rows.set(task.id, row);
    const created = parseTime(task.created_at) ?? 0;
    const before = sorted ? [...this.body.rows].find((tr) => {
      const other = this.rows.get(tr.dataset.taskId);
      return other && other !== row && (parseTime(other.task.created_at) ?? 0) <= created;
    }) : null;
    if (before) this.body.insertBefore(row.tr, before);
    else this.body.append(row.tr);
    this.update(row, task);
  }

  /** Drop every row (another token's tasks, say). */
  forget() {
    this.cursors = [null];
    this.loads += 1;
    this.show({ items: [], next_cursor: null });
  }

  build(task) {
    const cells = {
      name: el("a", { href: `#task/${encodeURIComponent(task.id)}`, text: task.name,
        class: "task-link" }),
      id: el("span", { class: "task-id", text: shortId(task.id) }),
      status: el("span", { class: "badge" }),
      bar: el("progress", { attrs: { "aria-label": `Progress of ${task.name} ${shortId(task.id)}` } }),
      progressText: el("span", { class: "progress-text" }),
      age: el("td", { attrs: { "data-label": "Age" } }),
      duration: el("td", { attrs: { "data-label": "Duration" } }),
      actions: el("td", { class: "actions", attrs: { "data-label": "Actions" } }),
    };
    const tr = el("tr", { attrs: { "data-task-id": task.id } },
      el("td", { class: "name", attrs: { "data-label": COLUMNS[0] } }, cells.name, " ", cells.id),
      el("td", { attrs: { "data-label": COLUMNS[1] } }, cells.status),
      el("td", { class: "progress", attrs: { "data-label": COLUMNS[2] } },
        el("div", { class: "progress-cell" }, cells.bar, cells.progressText)),
      cells.age, cells.duration, cells.actions);
    return { task, tr, cells, actionsFor: null };
  }

  update(row, task) {
    row.task = task;
    const { cells } = row;
    row.tr.dataset.status = task.status;
    cells.status.className = `badge status-${task.status}`;
    cells.status.textContent = task.cancel_requested && ACTIVE.has(task.status)
      ? `${task.status} (cancelling)` : task.status;
    const progress = progressOf(task);
    cells.bar.max = progress.max;
    if (progress.value == null) cells.bar.removeAttribute("value");
    else cells.bar.value = progress.value;
    cells.progressText.textContent = progress.text;
    this.renderTimes(row);
    this.renderActions(row);
  }

  renderActions(row) {
    const { task } = row;
    const kind = ACTIVE.has(task.status) ? "cancel" : "delete";
    if (row.actionsFor === kind) return; // keep the button (and its focus) as it is
    row.actionsFor = kind;
    const label = `${kind === "cancel" ? "Cancel" : "Delete"} ${task.name} ${shortId(task.id)}`;
    const button = el("button", { type: "button", class: `action ${kind}`,
      text: kind === "cancel" ? "Cancel" : "Delete", attrs: { "aria-label": label },
      on: { click: () => this.act(button, kind, row.task) } });
    clear(row.cells.actions).append(button);
  }

  async act(button, kind, task) {
    button.disabled = true;
    try {
      await (kind === "cancel" ? this.actions.cancel(task) : this.actions.remove(task));
    } finally {
      button.disabled = false;
    }
  }

  renderTimes(row) {
    row.cells.age.textContent = age(row.task);
    row.cells.duration.textContent = duration(row.task);
  }

  /** Ages and running durations move on (called every second). */
  tick() {
    for (const row of this.rows.values()) this.renderTimes(row);
  }
}
