// A task's detail view (a modal dialog, opened from #task/<id>): arguments, result or
// error with its traceback when the service exposes it, timestamps, attempts and live
// progress, with the cancel and delete actions.

import { api, ApiError } from "./api.js";
import { byId, clear, el } from "./dom.js";
import { ACTIVE, duration, localTime, pretty, progressOf } from "./format.js";

export class Detail {
  /** actions: {cancel(task), remove(task), closed(), failed(error)}. */
  constructor(actions) {
    this.actions = actions;
    this.dialog = byId("detail");
    this.heading = byId("detail-heading");
    this.body = byId("detail-body");
    this.message = byId("detail-message");
    this.cancelButton = byId("detail-cancel");
    this.deleteButton = byId("detail-delete");
    this.task = null;
    this.id = null;
    byId("detail-close").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => {
      this.id = null;
      this.task = null;
      this.actions.closed();
    });
    this.cancelButton.addEventListener("click", () => this.act("cancel"));
    this.deleteButton.addEventListener("click", () => this.act("remove"));
  }

  get isOpen() {
    return this.dialog.open;
  }

  async open(id) {
    this.id = id;
    this.task = null;
    this.heading.textContent = "Task";
    this.message.textContent = "Loading…";
    clear(this.body);
    this.cancelButton.hidden = this.deleteButton.hidden = true;
    if (!this.dialog.open) this.dialog.showModal();
    try {
      const task = await api.get(id);
      if (this.id === id) this.show(task);
    } catch (error) {
      if (this.id !== id) return;
      if (error instanceof ApiError && error.status === 404) {
        this.message.textContent = "There is no such task (it may have been deleted).";
      } else {
        this.message.textContent = "";
        this.actions.failed(error);
      }
    }
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  /** A task changed (from the feed or an action): redraw it if it is the one shown. */
  update(task) {
    if (this.id === task.id && this.task) this.show(task);
  }

  show(task) {
    const changed = !this.task || this.task.status !== task.status
      || this.task.cancel_requested !== task.cancel_requested;
    this.task = task;
    this.message.textContent = "";
    this.heading.textContent = `Task ${task.name}`;
    if (changed) this.render(task);
    else this.renderProgress(task);
    this.cancelButton.hidden = !ACTIVE.has(task.status);
    this.cancelButton.disabled = task.cancel_requested;
    this.deleteButton.hidden = ACTIVE.has(task.status);
  }

  render(task) {
    this.bar = el("progress", { attrs: { "aria-label": "Progress" } });
    this.progressText = el("span", { class: "progress-text" });
    this.duration = el("dd");
    const status = task.cancel_requested && ACTIVE.has(task.status)
      ? `${task.status} (cancel requested)` : task.status;
    const rows = [
      ["ID", el("code", { text: task.id })],
      ["Status", el("span", { class: `badge status-${task.status}`, text: status })],
      ["Progress", el("span", { class: "progress" }, this.bar, this.progressText)],
      ["Attempts", `${task.attempts} of ${task.max_attempts}`],
      ["Priority", String(task.priority)],
      ["Timeout", task.timeout == null ? "none" : `${task.timeout} s`],
      ["Created", localTime(task.created_at)],
      ["Scheduled for", localTime(task.scheduled_at)],
      ["Started", localTime(task.started_at)],
      ["Finished", localTime(task.finished_at)],
    ];
    const list = el("dl", { class: "facts" },
      ...rows.map(([term, value]) => el("div", {}, el("dt", { text: term }), el("dd", {}, value))),
      el("div", {}, el("dt", { text: "Duration" }), this.duration));
    clear(this.body).append(list,
      ...section("Arguments", pretty(task.args)),
      ...section("Keyword arguments", pretty(task.kwargs)),
      ...(task.status === "succeeded" ? section("Result", pretty(task.result)) : []),
      ...(task.error ? errorSection(task.error) : []));
    this.renderProgress(task);
  }

  renderProgress(task) {
    const progress = progressOf(task);
    this.bar.max = progress.max;
    if (progress.value == null) this.bar.removeAttribute("value");
    else this.bar.value = progress.value;
    this.progressText.textContent = progress.text;
    this.duration.textContent = duration(task) || "—";
  }

  /** The running duration moves on (called every second). */
  tick() {
    if (this.task && this.duration) this.duration.textContent = duration(this.task) || "—";
  }

  async act(kind) {
    const task = this.task;
    if (!task) return;
    const button = kind === "cancel" ? this.cancelButton : this.deleteButton;
    button.disabled = true;
    try {
      await this.actions[kind](task);
      if (kind === "remove") this.close();
    } finally {
      button.disabled = false;
    }
  }
}

function section(title, text) {
  return [el("h3", { text: title }), el("pre", { class: "data", text, attrs: { tabindex: 0 } })];
}

function errorSection(error) {
  const parts = [el("h3", { text: "Error" }),
    el("p", { class: "error-text" }, el("strong", { text: error.type }), `: ${error.message}`)];
  if (error.traceback) {
    parts.push(el("pre", { class: "data traceback", text: error.traceback, attrs: { tabindex: 0 } }));
  }
  return parts;
}
