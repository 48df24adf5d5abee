// The HTTP API, at URLs relative to the page (so it works at / and under a prefix),
// with the bearer token kept for the browser session (sessionStorage, never a URL).

import { noteServerDate } from "./format.js";

const TOKEN_KEY = "offload.token";

/** An answer that is not a success: its status and its problem details, if any. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem ?? null;
  }

  /** The problem's field errors: [{field, message}]. */
  get fieldErrors() {
    return Array.isArray(this.problem?.errors) ? this.problem.errors : [];
  }
}

/** The API answered 401: a token is needed (or the one given is not accepted). */
export class Unauthorized extends ApiError {}

/** A URL of the API, relative to the page. */
export function apiUrl(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [key, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item != null && item !== "") url.searchParams.append(key, String(item));
    }
  }
  return url;
}

export const token = {
  get() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** Request headers: the token, when there is one. */
export function authHeaders(extra = {}) {
  const headers = { ...extra };
  const value = token.get();
  if (value) headers.Authorization = `Bearer ${value}`;
  return headers;
}

async function readProblem(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** Call the API; the parsed JSON body (null for 204), or throws ApiError / Unauthorized. */
export async function call(method, path, { params, body } = {}) {
  const headers = authHeaders({ Accept: "application/json" });
  const init = { method, headers, cache: "no-store", credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(apiUrl(path, params), init);
  noteServerDate(response.headers.get("Date"));
  if (response.status === 401) throw new Unauthorized(401, await readProblem(response));
  if (!response.ok) throw new ApiError(response.status, await readProblem(response));
  return response.status === 204 ? null : response.json();
}

export const api = {
  stats: () => call("GET", "stats"),
  taskTypes: () => call("GET", "task-types"),
  list: (params) => call("GET", "tasks", { params }),
  get: (id) => call("GET", `tasks/${encodeURIComponent(id)}`),
  submit: (body) => call("POST", "tasks", { body }),
  cancel: (id) => call("POST", `tasks/${encodeURIComponent(id)}/cancel`),
  remove: (id) => call("DELETE", `tasks/${encodeURIComponent(id)}`),
  schedules: () => call("GET", "schedules"),
  pauseSchedule: (name) => call("POST", `schedules/${encodeURIComponent(name)}/pause`),
  resumeSchedule: (name) => call("POST", `schedules/${encodeURIComponent(name)}/resume`),
};
