// The apps of a namespace with live badges (the app list stream), starting a Task Runner
// from the catalogue's form, and cancelling a running one.

import { h, replace, badge, notice, ago } from "./dom.js";
import { call, enc } from "./api.js";

export function runBadges(s) {
  const run = s.run || {};
  const cicd = s.cicd;
  const cd = s.cd;
  return {
    run: h("span", { class: "badges" }, badge("Run", run.state, `${run.ready ?? 0}/${run.pods ?? 0} ready, ${run.restarts ?? 0} restarts`),
      h("span", { class: "count" }, ` ${run.ready ?? 0}/${run.pods ?? 0}`)),
    cicd: cicd ? h("span", { class: "badges" }, badge("CI/CD", cicd.phase, cicd.message), " ",
      h("span", { class: "muted" }, `${cicd.task || ""} ${cicd.workflow}`)) : h("span", { class: "muted" }, "no runs"),
    cd: cd ? h("span", { class: "badges" }, badge("Sync", cd.sync), " ", badge("Health", cd.health, cd.healthMessage))
      : h("span", { class: "muted" }, "no Application"),
  };
}

export function cancellable(phase) { return phase === "Running" || phase === "Pending"; }

export async function cancelRun(ns, name, status) {
  replace(status, notice("info", `Cancelling ${name}…`));
  try {
    await call("PUT", `/api/v1/namespaces/${enc(ns)}/workflows/${enc(name)}/stop`);
    replace(status, notice("info", `Cancelling ${name}: stop requested.`));
  } catch (err) {
    replace(status, notice(err.denied ? "denied" : "error", `${name} could not be cancelled: ${err.message}`));
  }
}

export function appsPage(main, mux, r, go) {
  const { ns } = r;
  const apps = new Map();
  const tbody = h("tbody", { id: "apps-body" });
  const status = h("div", { id: "apps-status" });
  const form = h("div", { id: "start-panel" });
  const table = h("table", { id: "apps", class: "grid" },
    h("caption", { class: "sr" }, `Apps in ${ns}`),
    h("thead", {}, h("tr", {}, ["App", "Run", "CI/CD", "CD", "Updated", ""].map((c) => h("th", { scope: "col" }, c)))),
    tbody);
  replace(main,
    h("section", { class: "card" },
      h("div", { class: "row" }, h("h1", {}, `Apps in ${ns}`),
        h("button", { type: "button", id: "start", onclick: () => startForm(form, ns, "", go) }, "Start a Task Runner…")),
      status, table),
    form);

  const draw = () => {
    const rows = [...apps.values()].sort((a, b) => a.app.localeCompare(b.app)).map((s) => {
      const b = runBadges(s);
      const running = s.cicd && cancellable(s.cicd.phase);
      return h("tr", { dataset: { app: s.app } },
        h("th", { scope: "row" }, h("a", { href: `#/ns/${enc(ns)}/app/${enc(s.app)}` }, s.app)),
        h("td", { class: "run" }, b.run), h("td", { class: "cicd" }, b.cicd), h("td", { class: "cd" }, b.cd),
        h("td", {}, ago(s.updatedAt)),
        h("td", { class: "actions" },
          h("button", { type: "button", onclick: () => startForm(form, ns, s.app, go) }, "Start…"),
          running ? h("button", { type: "button", class: "danger", onclick: () => cancelRun(ns, s.cicd.workflow, status) }, "Cancel") : null));
    });
    replace(tbody, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No apps yet.")));
  };
  draw();
  mux.subscribe("apps", `namespaces/${enc(ns)}/apps`, (e) => {
    switch (e.type) {
      case "snapshot": case "relist":
        apps.clear();
        for (const it of e.items) if (it.summary) apps.set(it.app, it.summary);
        break;
      case "app": apps.set(e.app, e.summary); break;
      case "deleted": apps.delete(e.app); break;
      case "error":
        if (e.status === 403) {
          apps.clear();
          replace(status, notice("denied", `Not allowed: you may not see the apps of namespace ${ns}.`));
        } else if (!e.retrying) replace(status, notice("error", e.message));
        break;
    }
    draw();
  });
  const tick = setInterval(draw, 15000); // the "Updated" column ages
  return { close() { clearInterval(tick); } };
}

// startForm draws the catalogue's form: the Task Runners the user may submit here, each
// parameter with its default, enum (a select) and whether it is required.
export async function startForm(panel, ns, app, go) {
  replace(panel, h("section", { class: "card" }, notice("info", "Reading the Task Runners…")));
  let runners;
  try {
    runners = (await call("GET", `/api/v1/namespaces/${enc(ns)}/workflow-templates`)).items;
  } catch (err) {
    replace(panel, h("section", { class: "card" }, notice(err.denied ? "denied" : "error", err.denied ? `Not allowed: you may not start Task Runners in ${ns}.` : err.message)));
    return;
  }
  if (!runners.length) { replace(panel, h("section", { class: "card" }, notice("info", `No Task Runner may be started in ${ns}.`))); return; }
  const key = (t) => `${t.kind}/${t.name}`;
  const pick = h("select", { id: "runner", required: true }, runners.map((t) =>
    h("option", { value: key(t) }, `${t.title || t.name}${t.cdKind ? ` (CD: ${t.cdKind})` : ""}${t.kind === "ClusterWorkflowTemplate" ? " · cluster" : ""}`)));
  const appInput = h("input", { id: "run-app", required: true, value: app, pattern: "[a-z0-9]([a-z0-9\\-]*[a-z0-9])?", maxlength: 63 });
  const params = h("div", { id: "params" });
  const result = h("div", { id: "start-result" });
  const describe = h("p", { class: "help" });
  const drawParams = () => {
    const t = runners.find((x) => key(x) === pick.value);
    describe.textContent = t.description || "";
    replace(params, (t.parameters || []).map((p) => {
      const id = `param-${p.name}`;
      const input = p.enum
        ? h("select", { id, name: p.name, required: p.required }, p.enum.map((v) => h("option", { value: v, selected: v === p.default }, v)))
        : h("input", { id, name: p.name, required: p.required, value: p.default ?? "", placeholder: p.required ? "required" : "" });
      return h("div", { class: "field" },
        h("label", { for: id }, p.name, p.required ? h("span", { class: "req", title: "required" }, " *") : null),
        input, p.description ? h("span", { class: "help" }, p.description) : null,
        h("span", { class: "field-error", id: `${id}-error`, role: "alert" }));
    }));
  };
  pick.onchange = drawParams;
  drawParams();
  const form = h("form", { id: "start-form", class: "card", onsubmit: async (e) => {
    e.preventDefault();
    const t = runners.find((x) => key(x) === pick.value);
    const parameters = [...params.querySelectorAll("[name]")].filter((el) => el.value !== "" || el.required).map((el) => `${el.name}=${el.value}`);
    for (const el of params.querySelectorAll(".field-error")) el.textContent = "";
    replace(result, notice("info", "Starting…"));
    try {
      const body = { resourceKind: t.kind, resourceName: t.name, app: appInput.value, submitOptions: { parameters } };
      const w = await call("POST", `/api/v1/namespaces/${enc(ns)}/workflows`, body);
      replace(result, h("p", { class: "notice info", role: "status" }, "Started ",
        h("a", { href: `#/ns/${enc(ns)}/app/${enc(appInput.value)}/run/${enc(w.name)}`, id: "started-run" }, w.name), "."));
    } catch (err) {
      for (const fe of err.problem?.errors || []) {
        const name = (fe.field || "").replace(/^submitOptions\.parameters\./, "");
        const slot = document.getElementById(`param-${name}-error`);
        if (slot) slot.textContent = fe.detail;
      }
      replace(result, notice(err.denied ? "denied" : "error", err.denied ? `Not allowed: ${err.message}` : err.message));
    }
  } },
  h("h2", {}, `Start a Task Runner in ${ns}`),
  h("div", { class: "field" }, h("label", { for: "runner" }, "Task Runner"), pick), describe,
  h("div", { class: "field" }, h("label", { for: "run-app" }, "App", h("span", { class: "req", title: "required" }, " *")), appInput),
  params,
  h("div", { class: "row" }, h("button", { type: "submit" }, "Start"), h("button", { type: "button", onclick: () => replace(panel) }, "Close")),
  result);
  replace(panel, form);
  pick.focus();
}
