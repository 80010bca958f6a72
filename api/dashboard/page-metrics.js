/*
 * retrace dashboard: page-metrics.js
 *
 * Owns the metrics page, #/metrics: gauges, and rates from /v1/metrics
 * sampled every 2 s while it is shown, drawn as line charts by uPlot
 * (vendor/uPlot.iife.min.js, the global `uPlot`, with its styles
 * vendor/uPlot.min.css: index.html loads both before the modules). Each
 * chart's box says how many samples it holds (`data-samples`), and its
 * legend gives each series' latest rate in words.
 *
 * Counters read from the JSON: executions started (each workflow's
 * totalExecutions), completed and failed (system.executionsByStatus, which
 * only grow but for a redrive), steps completed (each workflow's
 * stepMetrics[].count) and tasks (system.totalTasksProcessed). A rate is
 * the difference between two samples over the time between them.
 *
 * It must never import another page, nor keep a sample once the page is
 * left (nothing is stored); a chart that cannot be drawn (uPlot missing)
 * says so in its box instead of failing the page.
 */

import { api } from "./api.js";
import { el, formatMs, formatPercent } from "./dom.js";

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
  charts.forEach((c) => c.mount()); // in the page, so that uPlot can measure its box
  page.onLeave(() => charts.forEach((c) => c.destroy()));
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
    page.ready();
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

/** The series' colours: the status colours of style.css (canvas cannot read CSS variables). */
const SERIES_COLOURS = ["#2f6fb3", "#2a7550", "#c53030"];

/**
 * A uPlot line chart of rates: `mount()` draws it empty once its element
 * is in the page, `draw(samples)` redraws it, `destroy()` drops it.
 */
function lineChart(spec) {
  const width = 640, height = 200;
  const plot = el("div", { class: "plot", role: "img", "aria-label": `${spec.title}, over the last five minutes` });
  const legend = el("p", { class: "legend", "aria-live": "off" });
  const element = el("section", { id: spec.id, class: "chart-box", "data-samples": 0 }, el("h2", { text: spec.title }), legend, plot);
  const showLegend = (last) => legend.replaceChildren(...spec.series.map(([key, label], i) =>
    el("span", { class: `series-${i}` }, "━ ", `${label}: ${last ? last.rate[key].toFixed(2) : "—"}/s `)));
  showLegend(null);
  const options = {
    width, height,
    legend: { show: false }, // the legend above says the same in words
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{ stroke: "#595f65", grid: { stroke: "#e5e8ea" } }, { stroke: "#595f65", grid: { stroke: "#e5e8ea" }, size: 48 }],
    series: [{}, ...spec.series.map(([, label], i) => ({ label, stroke: SERIES_COLOURS[i], width: 2, points: { show: false } }))],
  };
  let chart = null;
  const mount = () => {
    if (typeof uPlot === "undefined") {
      plot.replaceChildren(el("p", { class: "problem", text: "The chart library (/ui/uPlot.iife.min.js) did not load." }));
      return;
    }
    chart = new uPlot(options, [[], ...spec.series.map(() => [])], plot);
  };
  const draw = (samples) => {
    element.dataset.samples = String(samples.length);
    showLegend(samples[samples.length - 1]);
    if (chart) chart.setData([samples.map((s) => s.at / 1000), ...spec.series.map(([key]) => samples.map((s) => s.rate[key]))]);
  };
  const destroy = () => {
    if (chart) chart.destroy();
    chart = null;
  };
  return { element, mount, draw, destroy };
}
