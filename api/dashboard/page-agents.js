/*
 * retrace dashboard: page-agents.js
 *
 * Owns the agents and queues page, #/agents, refreshed every 3 s while it
 * is shown: the agents (GET /v1/agents) and, per capability, the queued
 * tasks and the task figures (GET /v1/metrics).
 *
 * It must never import another page, nor poll but through page.every()
 * (which stops when the page is left).
 */

import { api, serverNow } from "./api.js";
import { badge, el, formatMs, formatPercent, formatTime, tableHead, timeEl } from "./dom.js";

export function agentsPage(page) {
  const agentsBox = el("div", { id: "agents-box" });
  const queuesBox = el("div", { id: "queues-box" });
  const updated = el("p", { class: "muted", id: "agents-updated" });
  page.root.append(el("h1", { text: "Agents and queues" }), updated,
    el("h2", { text: "Agents" }), agentsBox, el("h2", { text: "Queues, per capability" }), queuesBox);
  page.every(3000, async () => {
    const [agents, metrics] = await Promise.all([api("/v1/agents"), api("/v1/metrics")]);
    if (!page.alive) return;
    agentsBox.replaceChildren(agentsTable(agents.agents || []));
    queuesBox.replaceChildren(queuesTable(metrics));
    updated.textContent = `Updated ${formatTime(new Date().toISOString())}; every 3 s while this page is shown.`;
  });
}

function agentsTable(agents) {
  if (!agents.length) return el("p", { class: "muted", text: "No agent is registered." });
  return el("table", { id: "agents", class: "list" },
    tableHead(["Name", "Status", "Capabilities", "Load", "Active / max", "Tasks", "Success", "Avg task", "Last seen"]),
    el("tbody", {}, agents.map((a) => el("tr", { "data-id": a.id },
      el("td", { title: a.id, text: a.name }),
      el("td", { class: "status" }, badge(a.status)),
      el("td", {}, (a.capabilities || []).map((c) => el("code", { class: "capability", text: c }))),
      el("td", {}, loadBar(a.loadFactor)),
      el("td", { class: "number", text: `${a.activeTasks} / ${a.maxConcurrency}` }),
      el("td", { class: "number", text: a.taskCount }),
      el("td", { class: "number", text: formatPercent(a.successRate) }),
      el("td", { class: "number", text: formatMs(a.averageTaskMs) }),
      el("td", {}, timeEl(a.lastSeen), el("span", { class: "muted", text: ` (${formatMs(serverNow() - Date.parse(a.lastSeen))} ago)` }))))));
}

function loadBar(ratio) {
  const value = typeof ratio === "number" ? Math.max(0, Math.min(1, ratio)) : 0;
  return el("meter", { min: 0, max: 1, value, title: formatPercent(ratio) }, formatPercent(ratio));
}

/**
 * Per capability: the tasks queued and how long the oldest has waited
 * (system.queueSizes, system.queueOldestAgeMs: absent for an empty queue),
 * and the task figures (capabilities).
 */
function queuesTable(metrics) {
  const system = metrics.system || {};
  const sizes = system.queueSizes || {};
  const ages = system.queueOldestAgeMs || {};
  const figures = metrics.capabilities || {};
  const names = [...new Set([...Object.keys(sizes), ...Object.keys(figures)])].sort();
  if (!names.length) return el("p", { class: "muted", text: "No capability is offered or used yet." });
  return el("table", { id: "queues", class: "list" },
    tableHead(["Capability", "Queued", "Oldest", "Tasks done", "Errors", "Retries", "Mean", "p50", "p99"]),
    el("tbody", {}, names.map((name) => {
      const f = figures[name] || {};
      return el("tr", { "data-capability": name },
        el("td", {}, el("code", { text: name })),
        el("td", { class: "number queued", text: sizes[name] ?? 0 }),
        el("td", { class: "number oldest", text: name in ages ? formatMs(ages[name]) : "—" }),
        el("td", { class: "number", text: f.count ?? 0 }),
        el("td", { class: "number", text: f.errors ?? 0 }),
        el("td", { class: "number", text: f.retries ?? 0 }),
        el("td", { class: "number", text: formatMs(f.meanMs) }),
        el("td", { class: "number", text: formatMs(f.p50Ms) }),
        el("td", { class: "number", text: formatMs(f.p99Ms) }));
    })));
}
