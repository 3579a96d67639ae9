// One multiplexed EventSource per tab: every panel's stream is a subscription on it, added
// and removed as panels open and close. EventSource resumes every subscription by itself
// after a dropped connection (Last-Event-ID); a connection the browser gave up on is opened
// again with the last id as lastEventId, so nothing is lost either way.

import { streams } from "./api.js";

export class Mux {
  // onState is told "connecting", "live", "reconnecting", "resumed" or "closed" (with a reason).
  constructor(onState) {
    this.onState = onState;
    this.wanted = new Map(); // wire name → {path, handler}
    this.panels = new Map(); // panel → its wire name
    this.serial = 0;
    this.queues = new Map(); // name → the promise of its last POST or DELETE, so they never cross
    this.session = null;
    this.lastId = "";
    this.connectedOnce = false;
    this.retry = 1000;
    this.closed = false;
    this.open();
  }

  open() {
    const q = this.lastId ? `?lastEventId=${encodeURIComponent(this.lastId)}` : "";
    const es = new EventSource(`${streams}/mux${q}`);
    this.es = es;
    this.session = null;
    this.onState(this.connectedOnce ? "reconnecting" : "connecting");
    this.listening = new Set(); // names with a listener on this EventSource
    es.addEventListener("session", (e) => this.onSession(JSON.parse(e.data), e));
    es.addEventListener("reconnect", () => this.onState("reconnecting"));
    es.addEventListener("error", (e) => {
      if (e.data) { // the router's own error event: the connection is closed
        const p = JSON.parse(e.data);
        this.onState("closed", p.message || p.code);
        if (p.code === "unauthenticated") { this.close(); return; }
      }
      if (es.readyState === EventSource.CLOSED && !this.closed) {
        // The browser gave up (an answer other than a stream): try again later, resuming.
        this.onState("reconnecting");
        setTimeout(() => { if (!this.closed && this.es === es) this.open(); }, this.retry);
        this.retry = Math.min(this.retry * 2, 10000);
      } else if (!this.closed) {
        this.onState("reconnecting");
      }
    });
    for (const name of this.wanted.keys()) this.listen(name);
  }

  listen(name) {
    const es = this.es;
    if (this.listening.has(name)) return;
    this.listening.add(name);
    es.addEventListener(name, (e) => {
      if (e.lastEventId) this.lastId = e.lastEventId;
      const sub = this.wanted.get(name);
      if (!sub || this.es !== es) return;
      const d = JSON.parse(e.data);
      // A subscription that ended has left the session: never add it again by itself.
      if (d.type === "end" || (d.type === "error" && d.retrying === false)) this.wanted.delete(name);
      sub.handler(d);
    });
  }

  async onSession(s, e) {
    if (e.lastEventId) this.lastId = e.lastEventId;
    this.retry = 1000;
    const again = this.connectedOnce;
    this.connectedOnce = true;
    this.session = s.session;
    const have = new Set((s.subscriptions || []).map((x) => x.name));
    const carried = [...have].filter((n) => this.wanted.has(n));
    this.onState(again && carried.length > 0 ? "resumed" : "live", again ? `${carried.length} stream(s) resumed` : "");
    for (const name of have) if (!this.wanted.has(name)) this.queue(name, () => this.remove(name));
    for (const [name, sub] of this.wanted) if (!have.has(name)) this.queue(name, () => this.add(name, sub.path));
  }

  // queue runs op after the name's earlier POST or DELETE has been answered.
  queue(name, op) {
    const next = (this.queues.get(name) || Promise.resolve()).then(op, op);
    this.queues.set(name, next);
    next.finally(() => { if (this.queues.get(name) === next) this.queues.delete(name); });
  }

  // subscribe opens the stream at path (as under /api/v1/stream/) for a panel; handler
  // gets each event's data. Subscribing a panel again replaces its stream. Each stream goes
  // by a name of its own on the wire (<panel>.<n>), so that a replaced stream's last
  // events, still in flight, never reach the new one's handler.
  subscribe(panel, path, handler) {
    const old = this.panels.get(panel);
    if (old && this.wanted.get(old)?.path === path) {
      this.wanted.get(old).handler = handler;
      return;
    }
    if (old) this.unsubscribe(panel);
    const name = `${panel}.${++this.serial}`;
    this.panels.set(panel, name);
    this.wanted.set(name, { path, handler });
    this.listen(name);
    this.queue(name, () => this.add(name, path));
  }

  unsubscribe(panel) {
    const name = this.panels.get(panel);
    this.panels.delete(panel);
    if (!name || !this.wanted.delete(name)) return;
    this.queue(name, () => this.remove(name));
  }

  unsubscribeAll() {
    for (const panel of [...this.panels.keys()]) this.unsubscribe(panel);
  }

  async add(name, path) {
    const session = this.session;
    if (!session) return; // added when the session starts
    if (this.wanted.get(name)?.path !== path) return; // given up or replaced meanwhile
    const res = await fetch(`${streams}/mux/${encodeURIComponent(session)}/subscriptions`, {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, path }),
    }).catch(() => null);
    const sub = this.wanted.get(name);
    if (!res || res.ok || res.status === 409 || !sub || sub.path !== path) return;
    if (res.status === 404 && this.session !== session) return; // added again on the new session
    const p = await res.json().catch(() => ({}));
    sub.handler({ type: "error", status: res.status, code: res.status === 403 ? "forbidden" : "refused",
      message: p.detail || p.title || `HTTP ${res.status}`, retrying: false });
  }

  async remove(name) {
    if (!this.session) return;
    await fetch(`${streams}/mux/${encodeURIComponent(this.session)}/subscriptions/${encodeURIComponent(name)}`, {
      method: "DELETE", credentials: "same-origin",
    }).catch(() => null);
  }

  close() {
    this.closed = true;
    this.es?.close();
  }
}
