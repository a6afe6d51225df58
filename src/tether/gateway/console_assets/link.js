// The console's one WebSocket to the gateway: JSON-RPC calls, notifications, and
// reconnecting with backoff (the cookie authenticates the upgrade; see docs/security.md).

const CLOSED = { message: "the connection closed", data: { code: "connection_closed" } };

export class Link {
  constructor({ onState, onNotify, onOpen, checkSession, role }) {
    this.role = role; // () -> the role to take: owners take "admin"
    this.onState = onState;
    this.onNotify = onNotify;
    this.onOpen = onOpen;
    this.checkSession = checkSession;
    this.ws = null;
    this.ready = false;
    this.retry = 0;
    this.nextId = 1;
    this.calls = new Map();
    this.stopped = true;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect(); // (nothing if already connecting)
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
    this.ws = null;
    this.ready = false;
  }

  connect() {
    if (this.stopped || this.ws) return;
    this.onState("connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    this.helloRole = this.role();
    ws.addEventListener("open", () => {
      // the gateway handles ``hello`` before it reads the next frame, so calls follow it
      // at once (no round trip of its own); if it is refused, they are too and the
      // connection closes
      this.raw(ws, "hello", { protocol: [1], role: this.helloRole }).then(
        () => {
          if (ws === this.ws) this.retry = 0;
        },
        (err) => {
          console.warn("the gateway refused", err);
          ws.refused = true; // what was sent behind it reads as a lost connection
          ws.close();
        },
      );
      this.ready = true;
      this.onState("live");
      this.onOpen();
    });
    ws.addEventListener("message", (event) => this.receive(ws, event.data));
    ws.addEventListener("close", () => this.closed(ws));
  }

  receive(ws, data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.id !== undefined && frame.method === undefined) {
      const waiting = this.calls.get(frame.id);
      if (!waiting) return;
      this.calls.delete(frame.id);
      if (ws.refused) waiting.reject(CLOSED);
      else if (frame.error) waiting.reject(frame.error);
      else waiting.resolve(frame.result);
    } else if (frame.method && frame.id === undefined && ws === this.ws) {
      this.onNotify(frame.method, frame.params);
    }
  }

  closed(ws) {
    for (const [id, waiting] of this.calls) {
      if (waiting.ws === ws) {
        this.calls.delete(id);
        waiting.reject(CLOSED);
      }
    }
    if (this.ws !== ws) return;
    this.ws = null;
    this.ready = false;
    if (this.stopped) return;
    this.onState("offline");
    const delay = Math.min(10000, 300 * 2 ** this.retry++);
    this.timer = setTimeout(async () => {
      if (await this.checkSession()) this.connect();
    }, delay);
  }

  raw(ws, method, params) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { ws, resolve, reject });
      ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  /** Call a method; fails at once when the link is not live. */
  call(method, params = {}) {
    if (!this.ready || !this.ws) {
      return Promise.reject({ message: "not connected", data: { code: "connection_closed" } });
    }
    return this.raw(this.ws, method, params);
  }
}

/** An RPC error in words. */
export function why(err) {
  if (!err) return "?";
  return err.message || err.data?.code || String(err);
}
