// The app's pods' CPU and memory as a live chart: the last hour from Prometheus when the
// router has it (a `history` event), then each poll of metrics.k8s.io.

import uPlot from "uplot";
import { h, replace, notice } from "./dom.js";
import { enc } from "./api.js";

const span = 3600; // seconds shown

export function metricsPanel(el, mux, ns, app) {
  const now = h("p", { id: "metrics-now", class: "muted", role: "status" }, "Waiting for the first poll…");
  const status = h("div", { id: "metrics-status" });
  const chartBox = h("div", { id: "metrics-chart", role: "img", "aria-label": `CPU and memory of ${app}'s pods over the last hour` });
  replace(el, h("h2", {}, "CPU and memory"), status, now, chartBox);
  const data = [[], [], []]; // unix seconds, CPU millicores, memory MiB
  const put = (t, cpu, mem) => {
    const i = data[0].findIndex((x) => x >= t);
    if (i >= 0 && data[0][i] === t) { data[1][i] = cpu; data[2][i] = mem; return; }
    const at = i < 0 ? data[0].length : i;
    data[0].splice(at, 0, t); data[1].splice(at, 0, cpu); data[2].splice(at, 0, mem);
  };
  const trim = () => {
    const from = Date.now() / 1000 - span;
    while (data[0].length && data[0][0] < from) { data[0].shift(); data[1].shift(); data[2].shift(); }
  };
  const plot = new uPlot({
    width: Math.max(320, chartBox.clientWidth || 560), height: 220,
    scales: { x: { time: true }, cpu: { auto: true }, mem: { auto: true } },
    series: [{}, { label: "CPU (millicores)", scale: "cpu", stroke: "#2563eb", width: 2 },
      { label: "Memory (MiB)", scale: "mem", stroke: "#c2410c", width: 2, dash: [6, 3] }],
    axes: [{}, { scale: "cpu", label: "millicores" }, { scale: "mem", side: 1, label: "MiB", grid: { show: false } }],
  }, data, chartBox);
  chartBox.dataset.points = "0";
  const redraw = () => {
    trim();
    plot.setData(data);
    chartBox.dataset.points = String(data[0].length);
  };
  const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(320, chartBox.clientWidth), height: 220 }));
  resize.observe(chartBox);
  mux.subscribe("metrics", `namespaces/${enc(ns)}/metrics/pods?app=${enc(app)}`, (e) => {
    if (e.type === "history") {
      if (!e.available) {
        replace(status, notice("info", `The last hour is not available (${e.message || "no Prometheus"}); the chart starts now.`));
        return;
      }
      // A value may be missing at a point (a container's first CPU rate comes a scrape late).
      for (const p of e.total || []) put(Date.parse(p.time) / 1000, p.cpuMillis ?? null, p.memoryBytes != null ? p.memoryBytes / 1048576 : null);
      chartBox.dataset.history = String(Number(chartBox.dataset.history || 0) + (e.total || []).length);
      redraw();
    } else if (e.type === "metrics") {
      if (e.pods.length === 0) { now.textContent = "No usage reported yet."; return; }
      put(Date.parse(e.time) / 1000, e.total.cpuMillis, e.total.memoryBytes / 1048576);
      now.textContent = `Now: ${e.total.cpuMillis} millicores, ${(e.total.memoryBytes / 1048576).toFixed(0)} MiB over ${e.pods.length} pod(s)`;
      chartBox.dataset.live = String(Number(chartBox.dataset.live || 0) + 1);
      redraw();
    } else if (e.type === "error") {
      if (e.status === 403) replace(status, notice("denied", `Not allowed: you may not see the metrics of ${ns}.`));
      else replace(status, notice(e.retrying ? "info" : "error", e.message));
    }
  });
  return { close() { resize.disconnect(); plot.destroy(); } };
}
