// Server-Sent Events over fetch(): EventSource cannot send an Authorization header.
// The parser follows the HTML standard's event-stream interpretation; the reader
// reconnects after the server's retry delay, resuming with Last-Event-ID.

/** Turns chunks of an event stream into events: {type, data, id}. */
export class EventStreamParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.skipLineFeed = false; // the last chunk ended with "\r": a "\n" may follow
    this.type = "";
    this.data = [];
    this.lastEventId = "";
    this.retry = null;
  }

  push(chunk) {
    let text = chunk;
    if (this.skipLineFeed && text.startsWith("\n")) text = text.slice(1);
    this.skipLineFeed = false;
    this.buffer += text;
    const endOfLine = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = endOfLine.exec(this.buffer)) !== null) {
      this.line(this.buffer.slice(start, match.index));
      start = endOfLine.lastIndex;
      // A "\r" that ends the chunk may be the first half of a "\r\n".
      if (match[0] === "\r" && start === this.buffer.length) this.skipLineFeed = true;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") return this.flush();
    if (line.startsWith(":")) return; // a comment: keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  flush() {
    const { type, data } = this;
    this.type = "";
    this.data = [];
    if (data.length === 0) return;
    this.dispatch({ type: type || "message", data: data.join("\n"), id: this.lastEventId });
  }
}

const MAX_DELAY = 30_000; // ms between attempts at most, however often they fail

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Follows an event stream until stopped. Callbacks: onOpen(resumed), onEvent(event),
 * onState("live" | "reconnecting" | "unavailable"), onUnauthorized().
 */
export class EventStream {
  constructor(url, { headers, onOpen, onEvent, onState, onUnauthorized }) {
    Object.assign(this, { url, headers, onOpen, onEvent, onState, onUnauthorized });
    this.controller = null;
    this.lastEventId = "";
    this.retry = 2000;
  }

  start() {
    this.stop();
    this.controller = new AbortController();
    this.run(this.controller.signal).catch((error) => {
      if (!this.controller?.signal.aborted) console.warn("event stream stopped", error);
    });
  }

  stop() {
    this.controller?.abort();
    this.controller = null;
  }

  async run(signal) {
    let failures = 0;
    while (!signal.aborted) {
      const wait = await this.connect(signal);
      if (wait === null) return; // unauthorized or stopped: no retry
      failures = wait.failed ? failures + 1 : 0;
      this.onState(failures > 3 ? "unavailable" : "reconnecting");
      const backoff = wait.failed ? Math.min(this.retry * 2 ** Math.min(failures - 1, 4), MAX_DELAY)
        : this.retry;
      await pause(Math.max(wait.after ?? 0, backoff), signal);
    }
  }

  /** One connection: null to stop, else {failed, after} before the next attempt. */
  async connect(signal) {
    const headers = this.headers({ Accept: "text/event-stream" });
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    let response;
    try {
      response = await fetch(this.url, { headers, signal, cache: "no-store" });
    } catch {
      return signal.aborted ? null : { failed: true };
    }
    if (response.status === 401) {
      this.onUnauthorized();
      return null;
    }
    if (!response.ok || !response.body) {
      const after = Number(response.headers.get("Retry-After")) * 1000 || 0;
      return { failed: true, after };
    }
    this.onState("live");
    this.onOpen(Boolean(this.lastEventId));
    return this.read(response.body, signal);
  }

  async read(body, signal) {
    const parser = new EventStreamParser((event) => {
      this.lastEventId = event.id;
      this.onEvent(event);
    });
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
        if (parser.retry != null) this.retry = parser.retry;
      }
    } catch {
      if (signal.aborted) return null;
    }
    // Whatever the parser saw last is where a reconnection resumes.
    this.lastEventId = parser.lastEventId || this.lastEventId;
    return signal.aborted ? null : { failed: false };
  }
}
