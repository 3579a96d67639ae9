// Building the DOM without innerHTML: every value from the APIs is text, never markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// Tones of a status, each with a symbol: status is never told by colour alone.
const tones = {
  ok: "✔", warn: "●", bad: "✖", busy: "◐", idle: "○",
};

export function tone(status) {
  switch (status) {
    case "Succeeded": case "Running": case "Synced": case "Healthy": case "Ready": case "Normal": case "True":
      return "ok";
    case "Pending": case "Progressing": case "OutOfSync": case "Suspended": case "Warning":
      return "warn";
    case "Failed": case "Error": case "Degraded": case "Missing": case "CrashLoopBackOff": case "False":
      return "bad";
    case "Stopped": case "Unknown": case undefined: case null: case "":
      return "idle";
    default:
      return "idle";
  }
}

// badge shows a status as symbol and word; label says what it is the status of.
export function badge(label, status, detail) {
  // A run in progress is busy; a pod or an app running is fine.
  const t = status === "Running" && ["CI/CD", "Phase", "Step"].includes(label) ? "busy" : tone(status);
  return h("span", { class: `badge ${t}`, title: detail || undefined, dataset: { status: status || "none" } },
    h("span", { class: "sym", "aria-hidden": "true" }, tones[t]),
    h("span", { class: "sr" }, label + ": "),
    status || "none");
}

export function ago(t) {
  if (!t) return "";
  const s = (Date.now() - Date.parse(t)) / 1000;
  if (!isFinite(s)) return "";
  if (s < 60) return `${Math.max(0, Math.round(s))}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function duration(from, to) {
  if (!from) return "";
  const s = Math.round(((to ? Date.parse(to) : Date.now()) - Date.parse(from)) / 1000);
  if (!isFinite(s) || s < 0) return "";
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${s % 60}s`;
}

// notice is a panel's message: kind "error", "denied" or "info".
export function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "info" ? "status" : "alert" }, text);
}
