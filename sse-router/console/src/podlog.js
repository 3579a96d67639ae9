// A pod's log: follows it live, pauses (lines keep arriving and wait), searches what is
// shown, and downloads what was received.

import { h, replace, notice } from "./dom.js";
import { enc } from "./api.js";

const keep = 5000; // lines kept in the page

export function podLogPanel(el, mux, ns, pod) {
  const lines = []; // {time, line}
  let paused = false;
  let waiting = 0;
  let query = "";
  const out = h("pre", { id: "pod-log-lines", class: "log", tabindex: 0, "aria-label": `Log of ${pod}` });
  const status = h("div", { id: "pod-log-status" });
  const count = h("span", { id: "pod-log-count", class: "muted", role: "status" });
  const pause = h("button", { type: "button", id: "pod-log-pause", "aria-pressed": "false", onclick: () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) draw();
    counter();
  } }, "Pause");
  const search = h("input", { type: "search", id: "pod-log-search", placeholder: "Search the log", "aria-label": "Search the log", oninput: () => {
    query = search.value.toLowerCase();
    draw();
  } });
  const download = h("button", { type: "button", id: "pod-log-download", onclick: () => {
    const blob = new Blob(lines.map((l) => `${l.time} ${l.line}\n`), { type: "text/plain" });
    const a = h("a", { href: URL.createObjectURL(blob), download: `${pod}.log` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } }, "Download");
  replace(el, h("div", { class: "row" }, h("h2", {}, `Log of ${pod}`), pause, search, download, count), status, out);

  const counter = () => {
    count.textContent = `${lines.length} lines${paused && waiting ? `, ${waiting} new while paused` : ""}`;
  };
  const row = (l) => {
    if (!query) return h("span", { class: "line" }, l.line, "\n");
    const i = l.line.toLowerCase().indexOf(query);
    return h("span", { class: "line" }, l.line.slice(0, i), h("mark", {}, l.line.slice(i, i + query.length)), l.line.slice(i + query.length), "\n");
  };
  const shown = (l) => !query || l.line.toLowerCase().includes(query);
  const draw = () => {
    waiting = 0;
    replace(out, lines.filter(shown).map(row));
    out.scrollTop = out.scrollHeight;
    counter();
  };
  mux.subscribe("podlog", `namespaces/${enc(ns)}/pods/${enc(pod)}/log?tailLines=500`, (e) => {
    if (e.type === "log") {
      // Lines again: a "retrying" notice no longer holds.
      if (status.firstChild) replace(status);
      const l = { time: e.time, line: e.line };
      lines.push(l);
      if (lines.length > keep) lines.splice(0, lines.length - keep);
      if (paused) { waiting++; counter(); return; }
      if (shown(l)) {
        const stick = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.append(row(l));
        while (out.childNodes.length > keep) out.firstChild.remove();
        if (stick) out.scrollTop = out.scrollHeight;
      }
      counter();
    } else if (e.type === "end") {
      replace(status, notice("info", `The log ended (${e.reason}).`));
    } else if (e.type === "error") {
      if (e.status === 403) replace(status, notice("denied", `Not allowed: you may not read the log of ${pod}.`));
      else replace(status, notice(e.retrying ? "info" : "error", e.message));
    }
  });
  return { close() {} };
}
