// Formatting task data for people: times, durations, progress, JSON.

/** Every status, in the service's order; a newer service may add some (see learnStatuses). */
export const STATUSES = ["queued", "scheduled", "waiting", "running", "succeeded", "failed",
  "cancelled"];
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
/** The statuses a task can still leave: any status but the terminal ones. */
export const ACTIVE = {
  has: (status) => !TERMINAL.has(status),
  * [Symbol.iterator]() {
    yield* STATUSES.filter((status) => !TERMINAL.has(status));
  },
};

/** Add the statuses a service counts that this page did not know; true if there were any. */
export function learnStatuses(names) {
  const fresh = names.filter((name) => !STATUSES.includes(name));
  if (!fresh.length) return false;
  const ordered = names.filter((name) => STATUSES.includes(name) || fresh.includes(name));
  STATUSES.splice(0, STATUSES.length, ...ordered, ...STATUSES.filter((s) => !names.includes(s)));
  return true;
}

/** Milliseconds the server's clock is ahead of ours (from a response's Date header). */
let skew = 0;

export function noteServerDate(header) {
  const server = Date.parse(header ?? "");
  if (Number.isNaN(server)) return;
  const ahead = server - Date.now();
  // The header has a one-second resolution: smaller differences are noise.
  skew = Math.abs(ahead) > 1500 ? ahead : 0;
}

/** Now, on the server's clock. */
export function serverNow() {
  return Date.now() + skew;
}

/** A timestamp of the API as milliseconds, or null. */
export function parseTime(value) {
  if (!value) return null;
  const time = Date.parse(value);
  return Number.isNaN(time) ? null : time;
}

/** "12 ms", "4.2 s", "3 min 5 s", "2 h 5 min", "3 d 1 h". */
export function span(ms) {
  if (ms == null || ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** How long ago the task was created. */
export function age(task) {
  const created = parseTime(task.created_at);
  if (created == null) return "";
  const elapsed = serverNow() - created;
  return elapsed < 1000 ? "just now" : `${span(elapsed)} ago`;
}

/** How long the task ran (or has run so far); empty before it started. */
export function duration(task) {
  const started = parseTime(task.started_at);
  if (started == null) return "";
  const end = parseTime(task.finished_at) ?? serverNow();
  return span(end - started);
}

/** A progress bar's value, maximum and text for a task. */
export function progressOf(task) {
  const progress = task.progress;
  if (task.status === "succeeded") return { value: 1, max: 1, text: "done" };
  if (!progress) {
    return task.status === "running" ? { value: null, max: 1, text: "running" }
      : { value: 0, max: 1, text: TERMINAL.has(task.status) ? "" : "not started" };
  }
  const { current, total, message } = progress;
  if (total && total > 0) {
    const value = Math.min(Math.max(current, 0), total);
    const percent = Math.round((value / total) * 100);
    return { value, max: total, text: message ? `${percent} % · ${message}` : `${percent} %` };
  }
  return { value: null, max: 1, text: message ?? String(current) };
}

/** JSON for reading: indented, any value. */
export function pretty(value) {
  return JSON.stringify(value, null, 2) ?? "null";
}

/** A short, readable form of a task id. */
export function shortId(id) {
  return id.length > 10 ? `${id.slice(0, 8)}…` : id;
}

/** A timestamp as the reader's local date and time, with the ISO text as a fallback. */
export function localTime(value) {
  const time = parseTime(value);
  return time == null ? "—" : new Date(time).toLocaleString();
}
