// One app: its pipeline history (live and archived runs in one list), a run's steps and
// live log, its pods and a pod's log, its pods' CPU and memory as a live chart, events,
// and its Argo CD Application.

import { h, replace, badge, notice, ago, duration } from "./dom.js";
import { call, enc } from "./api.js";
import { runBadges, cancellable, cancelRun, startForm } from "./apps.js";
import { metricsPanel } from "./metrics.js";
import { podLogPanel } from "./podlog.js";

const archivedLabel = "workflows.argoproj.io/workflow-archiving-status";

function denied(e) { return e.type === "error" && (e.status === 403 || e.code === "forbidden"); }

export function appPage(main, mux, r, go) {
  const { ns, app } = r;
  const closers = [];
  const head = h("div", { id: "app-badges", class: "badges" });
  const status = h("div", { id: "app-status" });
  const startPanel = h("div", { id: "start-panel" });
  const runs = h("section", { class: "card", id: "runs" });
  const run = h("section", { class: "card wide", id: "run", hidden: !r.run });
  const pods = h("section", { class: "card", id: "pods" });
  const podLog = h("section", { class: "card wide", id: "pod-log", hidden: !r.pod });
  const metrics = h("section", { class: "card", id: "metrics" });
  const application = h("section", { class: "card", id: "application" });
  const events = h("section", { class: "card wide", id: "events" });
  replace(main,
    h("section", { class: "card" },
      h("div", { class: "row" }, h("h1", {}, app),
        h("button", { type: "button", id: "start", onclick: () => startForm(startPanel, ns, app, go) }, "Start a Task Runner…")),
      head, status),
    startPanel,
    h("div", { class: "panels" }, run, podLog, runs, pods, metrics, application, events));

  // The app's summary badges, from the namespace's app list stream.
  mux.subscribe("apps", `namespaces/${enc(ns)}/apps`, (e) => {
    const pick = (s) => { const b = runBadges(s); replace(head, b.run, " ", b.cicd, " ", b.cd); };
    if (e.type === "snapshot" || e.type === "relist") {
      const it = e.items.find((x) => x.app === app);
      if (it?.summary) pick(it.summary); else replace(head, h("span", { class: "muted" }, "No summary yet."));
    } else if (e.type === "app" && e.app === app) pick(e.summary);
    else if (denied(e)) replace(status, notice("denied", `Not allowed: you may not see namespace ${ns}.`));
  });

  runsPanel(runs, mux, ns, app, go);
  if (r.run) runPanel(run, mux, ns, app, r.run, r.uid);
  podsPanel(pods, mux, ns, app, go);
  if (r.pod) closers.push(podLogPanel(podLog, mux, ns, r.pod));
  closers.push(metricsPanel(metrics, mux, ns, app));
  applicationPanel(application, mux, ns, app);
  eventsPanel(events, mux, ns, app);
  return { close() { for (const c of closers) c?.close(); } };
}

function runsPanel(el, mux, ns, app, go) {
  const byUID = new Map();
  const tbody = h("tbody");
  const status = h("div");
  let more = "";
  const moreButton = h("button", { type: "button", hidden: true, onclick: () => load() }, "Older runs");
  replace(el, h("h2", {}, "Pipeline history"), status,
    h("table", { class: "grid", id: "history" },
      h("thead", {}, h("tr", {}, ["Run", "Task", "Phase", "Started", "Took", ""].map((c) => h("th", { scope: "col" }, c)))), tbody),
    moreButton);
  const draw = () => {
    const items = [...byUID.values()].sort((a, b) =>
      (Date.parse(b.status?.startedAt || b.metadata.creationTimestamp) - Date.parse(a.status?.startedAt || a.metadata.creationTimestamp)));
    replace(tbody, items.length ? items.map((w) => {
      const m = w.metadata, st = w.status || {};
      const archived = m.labels?.[archivedLabel] === "Persisted";
      const href = `#/ns/${enc(ns)}/app/${enc(app)}/run/${enc(m.name)}${archived ? "/uid/" + enc(m.uid) : ""}`;
      return h("tr", { dataset: { run: m.name } },
        h("th", { scope: "row" }, h("a", { href }, m.name), archived ? h("span", { class: "tag" }, " archived") : null),
        h("td", {}, m.labels?.["dwp.io/task"] || m.labels?.["dwp.io/task-type"] || w.spec?.workflowTemplateRef?.name || ""),
        h("td", {}, badge("Phase", st.phase || "Pending", st.message)),
        h("td", {}, ago(st.startedAt || m.creationTimestamp)),
        h("td", {}, duration(st.startedAt, st.finishedAt)),
        h("td", {}, cancellable(st.phase) && !archived
          ? h("button", { type: "button", class: "danger", onclick: () => cancelRun(ns, m.name, status) }, "Cancel") : null));
    }) : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No runs yet.")));
  };
  const load = async () => {
    try {
      const l = await call("GET", `/api/v1/namespaces/${enc(ns)}/workflow-history?app=${enc(app)}&limit=20${more ? "&continue=" + enc(more) : ""}`);
      for (const w of l.items) if (!byUID.has(w.metadata.uid)) byUID.set(w.metadata.uid, w);
      more = l.metadata?.continue || "";
      moreButton.hidden = !more;
      draw();
    } catch (err) {
      replace(status, notice(err.denied ? "denied" : "error", err.denied ? `Not allowed: you may not see the runs of ${ns}.` : err.message));
    }
  };
  load();
  // Live runs as they change: the history's live part, kept current.
  mux.subscribe("workflows", `namespaces/${enc(ns)}/workflows?app=${enc(app)}`, (e) => {
    if (e.type === "snapshot" || e.type === "relist") for (const w of e.items) byUID.set(w.metadata.uid, w);
    else if (e.type === "ADDED" || e.type === "MODIFIED") byUID.set(e.object.metadata.uid, e.object);
    else if (denied(e)) replace(status, notice("denied", `Not allowed: you may not see the runs of ${ns}.`));
    draw();
  });
}

function runPanel(el, mux, ns, app, name, uid) {
  const steps = h("ol", { id: "steps", class: "steps" });
  const log = h("pre", { id: "run-log", class: "log", tabindex: 0, "aria-label": `Log of ${name}` });
  const status = h("div", { id: "run-status" });
  const phase = h("span", { id: "run-phase" });
  replace(el, h("div", { class: "row" }, h("h2", {}, `Run ${name}`), phase), status,
    h("h3", {}, "Steps"), steps, h("h3", {}, "Log"), log);
  const drawSteps = (w, archived) => {
    const st = w.status || {};
    replace(phase, badge("Phase", st.phase || "Pending", st.message));
    const nodes = Object.values(st.nodes || {}).filter((n) => n.type === "Pod")
      .sort((a, b) => Date.parse(a.startedAt || 0) - Date.parse(b.startedAt || 0));
    replace(steps, nodes.length ? nodes.map((n) => h("li", { dataset: { step: n.displayName } },
      badge("Step", n.phase, n.message), " ", h("strong", {}, n.displayName), " ", h("span", { class: "muted" }, duration(n.startedAt, n.finishedAt)),
      archived ? [" ", h("button", { type: "button", onclick: () => archivedLog(n) }, "Show log")] : null)) : h("li", { class: "muted" }, "No steps yet."));
  };
  const archivedLog = async (n) => {
    replace(log, `Reading the archived log of ${n.displayName}…`);
    try {
      const text = await call("GET", `/api/v1/namespaces/${enc(ns)}/archived-workflows/${enc(uid)}/nodes/${enc(n.id)}/log`);
      replace(log, text || "(empty)");
    } catch (err) {
      replace(log);
      replace(status, notice(err.denied ? "denied" : "error", err.message));
    }
  };
  if (uid) {
    // An archived run: the archive has its steps, argo-server its step logs.
    call("GET", `/api/v1/archived-workflows/${enc(uid)}`).then((w) => drawSteps(w, true))
      .catch((err) => replace(status, notice(err.denied ? "denied" : "error", err.message)));
    replace(log, "Pick a step's log.");
    return;
  }
  mux.subscribe("run", `namespaces/${enc(ns)}/workflows/${enc(name)}`, (e) => {
    if (e.type === "snapshot" || e.type === "relist") { if (e.items[0]) drawSteps(e.items[0]); }
    else if (e.type === "ADDED" || e.type === "MODIFIED") drawSteps(e.object);
    else if (e.type === "DELETED") replace(status, notice("info", "The run was deleted from the cluster; it may be in the archive."));
    else if (denied(e)) replace(status, notice("denied", `Not allowed: you may not see ${name}.`));
  });
  let lines = 0;
  mux.subscribe("runlog", `namespaces/${enc(ns)}/workflows/${enc(name)}/log`, (e) => {
    if (e.type === "log") {
      lines++;
      const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.append(h("span", { class: "line" }, h("span", { class: "step" }, `[${e.node || e.pod || ""}] `), e.line, "\n"));
      if (stick) log.scrollTop = log.scrollHeight;
    } else if (e.type === "end") {
      log.append(h("span", { class: "end", id: "run-log-end" }, `— ${lines} lines; the run ended (${e.reason || "done"}) —\n`));
    } else if (denied(e)) replace(status, notice("denied", `Not allowed: you may not read the log of ${name}.`));
    else if (e.type === "error" && !e.retrying) replace(status, notice("error", e.message));
  });
}

function podsPanel(el, mux, ns, app, go) {
  const pods = new Map();
  const tbody = h("tbody");
  const status = h("div");
  replace(el, h("h2", {}, "Pods"), status, h("table", { class: "grid", id: "pods-table" },
    h("thead", {}, h("tr", {}, ["Pod", "Status", "Ready", "Restarts", "Age"].map((c) => h("th", { scope: "col" }, c)))), tbody));
  const draw = () => {
    const items = [...pods.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    replace(tbody, items.length ? items.map((p) => {
      const cs = p.status?.containerStatuses || [];
      const ready = cs.filter((c) => c.ready).length;
      const restarts = cs.reduce((n, c) => n + (c.restartCount || 0), 0);
      const waiting = cs.find((c) => c.state?.waiting)?.state.waiting.reason;
      const phase = p.metadata.deletionTimestamp ? "Terminating" : waiting || p.status?.phase;
      return h("tr", { dataset: { pod: p.metadata.name } },
        h("th", { scope: "row" }, h("a", { href: `#/ns/${enc(ns)}/app/${enc(app)}/pod/${enc(p.metadata.name)}` }, p.metadata.name)),
        h("td", {}, badge("Status", phase)), h("td", {}, `${ready}/${cs.length || (p.spec?.containers || []).length}`),
        h("td", {}, restarts), h("td", {}, ago(p.metadata.creationTimestamp)));
    }) : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No pods.")));
  };
  draw();
  mux.subscribe("pods", `namespaces/${enc(ns)}/pods?app=${enc(app)}`, (e) => {
    if (e.type === "snapshot" || e.type === "relist") { pods.clear(); for (const p of e.items) pods.set(p.metadata.name, p); }
    else if (e.type === "ADDED" || e.type === "MODIFIED") pods.set(e.object.metadata.name, e.object);
    else if (e.type === "DELETED") pods.delete(e.object.metadata.name);
    else if (denied(e)) { pods.clear(); replace(status, notice("denied", `Not allowed: you may not see the pods of ${ns}.`)); }
    draw();
  });
}

function applicationPanel(el, mux, ns, app) {
  const body = h("div", { id: "application-body" }, notice("info", "Reading the Application…"));
  replace(el, h("h2", {}, "Argo CD Application"), body);
  mux.subscribe("application", `namespaces/${enc(ns)}/apps/${enc(app)}/application`, (e) => {
    if (denied(e)) { replace(body, notice("denied", `Not allowed: you may not see ${app}'s Application.`)); return; }
    if (e.type === "error") { if (!e.retrying) replace(body, notice("error", e.message)); return; }
    const a = e.application;
    if (!a) { replace(body, notice("info", e.type === "deleted" ? "The Application was deleted." : "No Application yet: deploy through a CD Task Runner.")); return; }
    const op = a.operationState;
    replace(body,
      h("p", { class: "badges" }, badge("Sync", a.sync?.status, a.sync?.revision), " ", badge("Health", a.health?.status, a.health?.message),
        a.deleting ? h("span", { class: "tag" }, " deleting") : null),
      op ? h("p", { class: "muted" }, `Last sync: ${op.phase}${op.message ? " — " + op.message : ""} ${op.finishedAt ? ago(op.finishedAt) : ""}`) : null,
      (a.conditions || []).map((c) => notice("error", `${c.type}: ${c.message || ""}`)),
      h("table", { class: "grid" }, h("thead", {}, h("tr", {}, ["Kind", "Name", "Sync", "Health"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, (a.resources || []).map((x) => h("tr", {}, h("td", {}, x.kind), h("td", {}, x.name),
          h("td", {}, badge("Sync", x.status)), h("td", {}, x.health ? badge("Health", x.health.status, x.health.message) : ""))))));
  });
}

function eventsPanel(el, mux, ns, app) {
  const events = new Map();
  const tbody = h("tbody");
  const status = h("div");
  replace(el, h("h2", {}, "Events"), status, h("table", { class: "grid", id: "events-table" },
    h("thead", {}, h("tr", {}, ["Type", "Reason", "Object", "Message", "Last seen"].map((c) => h("th", { scope: "col" }, c)))), tbody));
  const mine = (ev) => (ev.involvedObject?.name || "").startsWith(app);
  const when = (ev) => ev.lastTimestamp || ev.eventTime || ev.metadata.creationTimestamp;
  const draw = () => {
    const items = [...events.values()].filter(mine).sort((a, b) => Date.parse(when(b)) - Date.parse(when(a))).slice(0, 50);
    replace(tbody, items.length ? items.map((ev) => h("tr", {},
      h("td", {}, badge("Type", ev.type)), h("td", {}, ev.reason), h("td", {}, `${ev.involvedObject?.kind}/${ev.involvedObject?.name}`),
      h("td", {}, ev.message), h("td", {}, ago(when(ev))))) : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No events.")));
  };
  draw();
  mux.subscribe("events", `namespaces/${enc(ns)}/events`, (e) => {
    if (e.type === "snapshot" || e.type === "relist") { events.clear(); for (const x of e.items) events.set(x.metadata.uid, x); }
    else if (e.type === "ADDED" || e.type === "MODIFIED") events.set(e.object.metadata.uid, e.object);
    else if (e.type === "DELETED") events.delete(e.object.metadata.uid);
    else if (denied(e)) replace(status, notice("denied", `Not allowed: you may not see the events of ${ns}.`));
    draw();
  });
}
