// The dashboard: wires the API, the live feed (GET /events) and the page's parts.
// No polling: after the first read, every change arrives on the feed; a `reset` event
// (the feed could not resume, or this page fell behind) re-reads GET /tasks and /stats.
// Schedules are read again at a reset too, and once their next tick has passed.

import { api, ApiError, apiUrl, authHeaders, token, Unauthorized } from "./api.js";
import { TokenPrompt } from "./auth.js";
import { Throughput } from "./chart.js";
import { Detail } from "./detail.js";
import { byId } from "./dom.js";
import { TERMINAL } from "./format.js";
import { SubmitForm } from "./form.js";
import { Overview } from "./overview.js";
import { Schedules } from "./schedules.js";
import { EventStream } from "./sse.js";
import { TaskTable } from "./table.js";

const RECENT_FINISHED = 500; // finished tasks read to seed the throughput chart
const STATS_AT_MOST_EVERY = 5000; // ms: re-reads of /stats that status events ask for
const KNOWN_LIMIT = 10_000; // task statuses remembered to count transitions

const connection = byId("connection");
const alertBox = byId("alert");
const main = byId("main"); // aria-busy while the state is being read
const known = new Map(); // task id -> last status seen
let fresher = null; // tasks the feed changed while a reload was under way
let reloads = 0;
let loaded = false;

function remember(task) {
  const previous = known.get(task.id);
  known.delete(task.id);
  known.set(task.id, task.status);
  if (known.size > KNOWN_LIMIT) known.delete(known.keys().next().value);
  return previous;
}

function setConnection(state, text) {
  connection.dataset.state = state;
  connection.textContent = text;
}

function failed(error) {
  if (error instanceof Unauthorized) return prompt.ask();
  alertBox.textContent = error instanceof ApiError ? `The service answered: ${error.message}`
    : `Could not reach the service: ${error.message ?? error}`;
  alertBox.hidden = false;
}

async function cancel(task) {
  try {
    answered(await api.cancel(task.id));
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) answered(await api.get(task.id));
    else failed(error);
  }
}

async function remove(task) {
  try {
    await api.remove(task.id);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) return failed(error);
  }
  const status = known.get(task.id) ?? task.status;
  known.delete(task.id);
  overview.removed(status);
  table.remove(task.id);
  if (detail.id === task.id) detail.close();
}

const overview = new Overview(() => table.renderStatuses());
const chart = new Throughput();
const table = new TaskTable({ cancel, remove, failed });
const detail = new Detail({ cancel, remove, failed, closed: forgetHash });
const form = new SubmitForm({ submitted: answered, failed });
// With tokens on, a schedule's tasks belong to no token: no caller can open them.
const schedules = new Schedules({ failed }, () => !token.get());
const prompt = new TokenPrompt(start);
const feed = new EventStream(apiUrl("events"), {
  headers: authHeaders,
  onOpen: (resumed) => { if (!resumed || !loaded) reload(); },
  onEvent: received,
  onState: (state) => {
    if (state === "live") setConnection("live", "Live");
    else if (state === "reconnecting") setConnection("waiting", "Reconnecting…");
    else setConnection("down", "Live updates unavailable; retrying");
    if (state !== "live" && !loaded) reload();
  },
  onUnauthorized: () => prompt.ask(),
});

/** A task as it is now (from the feed, a submission or an action). */
function apply(task, kind) {
  fresher?.set(task.id, task);
  const previous = remember(task);
  if (kind === "status") {
    overview.transition(previous, task.status, task);
    statsWanted();
  }
  table.upsert(task);
  detail.update(task);
  schedules.taskChanged(task);
  if (TERMINAL.has(task.status)) chart.add(task);
}

function received(event) {
  if (event.type === "reset") return reload();
  if (event.type !== "status" && event.type !== "progress") return;
  let task;
  try {
    task = JSON.parse(event.data);
  } catch {
    return; // not a task: nothing to show
  }
  apply(task, event.type);
}

/** A task as an answer of ours gave it (submit, cancel): the feed may have told us more
 * already, and a finished task never changes again. */
function answered(task) {
  const seen = known.get(task.id);
  if (seen && (TERMINAL.has(seen) || (!TERMINAL.has(task.status) && seen !== task.status))) return;
  apply(task, "status");
}

// /stats says what the feed cannot (tasks this page never saw, records evicted):
// re-read when status events came, at most once per STATS_AT_MOST_EVERY.
let statsTimer = null;
let statsAgain = false;

function statsWanted() {
  if (statsTimer) {
    statsAgain = true;
    return;
  }
  statsTimer = setTimeout(() => {
    statsTimer = null;
    if (statsAgain) {
      statsAgain = false;
      statsWanted();
    }
  }, STATS_AT_MOST_EVERY);
  api.stats().then((stats) => overview.apply(stats), failed);
}

/** Read everything again: the counts, the table's page and the chart's recent tasks. */
async function reload() {
  const generation = ++reloads;
  fresher = new Map();
  main.setAttribute("aria-busy", "true");
  schedules.refresh(); // shows its own errors; the tasks need not wait for it
  try {
    const [stats, page, recent] = await Promise.all([api.stats(), table.fetchPage(),
      api.list({ status: [...TERMINAL], limit: RECENT_FINISHED })]);
    if (generation !== reloads) return;
    overview.apply(stats);
    for (const task of [...page.items, ...recent.items]) if (!fresher.has(task.id)) remember(task);
    table.show(page, fresher);
    chart.seed([...recent.items, ...fresher.values()]);
    loaded = true;
    alertBox.hidden = true;
  } catch (error) {
    if (generation === reloads) failed(error);
  } finally {
    if (generation === reloads) {
      fresher = null;
      main.setAttribute("aria-busy", "false");
    }
  }
}

function forgetState() {
  reloads += 1; // a read under way belongs to the earlier token
  known.clear();
  table.forget();
  schedules.forget();
  detail.close();
  overview.apply({ counts: {}, running: 0, capacity: 0 });
  chart.seed([]);
}

/** Start (again, after a token was given): the task types, then the feed and the data. */
async function start() {
  feed.stop();
  loaded = false;
  forgetState(); // what an earlier token could see is not this one's to show
  setConnection("waiting", "Connecting…");
  try {
    const types = (await api.taskTypes()).items;
    form.setTypes(types);
    table.setNames(types.map((type) => type.name));
  } catch (error) {
    setConnection("down", error instanceof Unauthorized ? "Token required" : "Not connected");
    return failed(error);
  }
  feed.start();
  route();
}

function route() {
  const match = /^#task\/(.+)$/.exec(location.hash);
  if (match) detail.open(decodeURIComponent(match[1]));
  else detail.close();
}

function forgetHash() {
  if (location.hash.startsWith("#task/")) {
    history.replaceState(null, "", location.pathname + location.search);
  }
}

window.addEventListener("hashchange", route);
setInterval(() => {
  table.tick();
  detail.tick();
  chart.tick();
  schedules.tick();
}, 1000); // ages and durations on the page's own clock: no request
start();
