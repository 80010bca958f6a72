/*
 * retrace dashboard: page-metrics.js
 *
 * Owns the metrics page, #/metrics: gauges, and rates from /v1/metrics
 * sampled every 2 s while it is shown, drawn as SVG line charts.
 *
 * Counters read from the JSON: executions started (each workflow's
 * totalExecutions), completed and failed (system.executionsByStatus, which
 * only grow but for a redrive), steps completed (each workflow's
 * stepMetrics[].count) and tasks (system.totalTasksProcessed). A rate is
 * the difference between two samples over the time between them.
 *
 * It must never import another page, nor keep a sample once the page is
 * left (nothing is stored).
 */

import { api } from "./api.js";
import { el, formatMs, formatPercent, svgEl } from "./dom.js";

const SAMPLE_MS = 2000;
const SAMPLES_KEPT = 150; // five minutes

function counters(metrics) {
  const system = metrics.system || {};
  const byStatus = system.executionsByStatus || {};
  let started = 0;
  let steps = 0;
  for (const w of Object.values(metrics.workflows || {})) {
    started += w.totalExecutions || 0;
    for (const s of Object.values(w.stepMetrics || {})) steps += s.count || 0;
  }
  return {
    started,
    completed: byStatus.completed || 0,
    failed: byStatus.failed || 0,
    steps,
    tasks: system.totalTasksProcessed || 0,
  };
}

const CHARTS = [
  { id: "chart-executions", title: "Executions per second", series: [["started", "started"], ["completed", "completed"], ["failed", "failed"]] },
  { id: "chart-steps", title: "Steps and tasks per second", series: [["steps", "steps completed"], ["tasks", "task results"]] },
];

export function metricsPage(page) {
  const gauges = el("div", { id: "gauges", class: "gauges" });
  const charts = CHARTS.map((spec) => lineChart(spec));
  page.root.append(el("h1", { text: "Metrics" }),
    el("p", { class: "muted", text: `Sampled from /v1/metrics every ${SAMPLE_MS / 1000} s while this page is open; rates over the last five minutes.` }),
    gauges, ...charts.map((c) => c.element));
  let previous = null;
  const rates = [];
  page.every(SAMPLE_MS, async () => {
    const metrics = await api("/v1/metrics");
    if (!page.alive) return;
    const now = { at: Date.now(), values: counters(metrics) };
    gauges.replaceChildren(...gaugeItems(metrics));
    if (previous) {
      const seconds = (now.at - previous.at) / 1000;
      const rate = {};
      for (const key of Object.keys(now.values)) rate[key] = Math.max(0, (now.values[key] - previous.values[key]) / seconds);
      rates.push({ at: now.at, rate });
      if (rates.length > SAMPLES_KEPT) rates.shift();
      for (const chart of charts) chart.draw(rates);
    }
    previous = now;
  });
}

function gaugeItems(metrics) {
  const s = metrics.system || {};
  const item = (label, value) => el("div", { class: "gauge" }, el("span", { class: "value", text: value }), el("span", { class: "label", text: label }));
  const queued = Object.values(s.queueSizes || {}).reduce((sum, n) => sum + n, 0);
  return [
    item("active executions", s.activeWorkflows ?? "—"),
    item("tasks queued", queued),
    item("active agents", s.activeAgents ?? "—"),
    item("task error rate", formatPercent(s.errorRate)),
    item("mean task latency", formatMs(s.avgTaskLatency)),
    item("open streams", s.sseClients ?? "—"),
    item("health", s.healthStatus || "—"),
  ];
}

/** An SVG line chart of rates; `draw(samples)` redraws it. */
function lineChart(spec) {
  const width = 640, height = 180, left = 44, bottom = 20, top = 10;
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": spec.title });
  const legend = el("p", { class: "legend" }, spec.series.map(([, label], i) => el("span", { class: `series-${i}` }, "━ ", label, " ")));
  const element = el("section", { id: spec.id, class: "chart-box" }, el("h2", { text: spec.title }), legend, svg);
  const draw = (samples) => {
    const max = Math.max(1, ...samples.flatMap((s) => spec.series.map(([key]) => s.rate[key])));
    const x = (i) => left + ((width - left - 4) * i) / (SAMPLES_KEPT - 1);
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const offset = SAMPLES_KEPT - samples.length;
    const children = [
      svgEl("line", { class: "axis", x1: left, y1: y(0), x2: width - 4, y2: y(0) }),
      svgEl("line", { class: "grid", x1: left, y1: y(max / 2), x2: width - 4, y2: y(max / 2) }),
      svgEl("line", { class: "grid", x1: left, y1: y(max), x2: width - 4, y2: y(max) }),
      svgEl("text", { class: "tick", x: left - 4, y: y(max) + 4, "text-anchor": "end", text: max.toFixed(max < 10 ? 1 : 0) }),
      svgEl("text", { class: "tick", x: left - 4, y: y(0) + 4, "text-anchor": "end", text: "0" }),
      svgEl("text", { class: "tick", x: left, y: height - 4, text: "5 min ago" }),
      svgEl("text", { class: "tick", x: width - 4, y: height - 4, "text-anchor": "end", text: "now" }),
    ];
    spec.series.forEach(([key], i) => {
      const points = samples.map((s, j) => `${x(offset + j).toFixed(1)},${y(s.rate[key]).toFixed(1)}`).join(" ");
      children.push(svgEl("polyline", { class: `series series-${i}`, points, "data-series": key }));
    });
    const last = samples[samples.length - 1];
    legend.replaceChildren(...spec.series.map(([key, label], i) =>
      el("span", { class: `series-${i}` }, "━ ", `${label}: ${last ? last.rate[key].toFixed(2) : "—"}/s `)));
    svg.replaceChildren(...children);
  };
  draw([]);
  return { element, draw };
}
