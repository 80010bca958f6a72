/*
 * retrace dashboard: graph.js
 *
 * Owns a workflow version's graph: fetched (GET
 * /v1/workflows/{name}/versions/{version}/graph), laid out with dagre
 * (vendor/dagre.min.js, the global `dagre`: index.html loads it before
 * the modules), drawn as SVG, each step coloured by the state its caller
 * gives (setStates).
 *
 * Graph JSON: nodes {id, label, kind, parent, branch}, edges {from, to,
 * kind, label}. Dagre cannot route edges to a cluster node, so a parallel
 * step with branches is drawn as a box (a cluster) holding the step's own
 * node (its fork: edges in, branch edges out), one box per branch, and a
 * join node its outgoing edges leave from; each branch's last steps lead
 * to the join.
 *
 * Each step's node is a button for the keyboard and the mouse (tabindex,
 * Enter or Space, click): it is selected and handed to the caller's
 * onSelect. With `withStates`, each node also says its state in words (a
 * colour is never the only sign) and the node's accessible name says it.
 *
 * It must never decide a step's state (the caller reads it from /replay)
 * nor let a graph that cannot be drawn fail the page: it says so in the
 * graph's box.
 */

import { ApiError, reportFailure } from "./access.js";
import { api } from "./api.js";
import { SVG_NS, el, enc, svgEl } from "./dom.js";

let graphCount = 0; // keeps marker ids unique in the document

function textWidth(text, px) {
  return Math.ceil(String(text).length * px * 0.6);
}

/** A node's lines: its label's (name first, then what it runs), or its id and kind. */
function nodeLines(node) {
  const lines = String(node.label || node.id).split("\n").filter((line) => line !== "");
  if (lines.length < 2) lines.push(node.kind);
  return lines;
}

/** A node's size; with states, room for one more line ("waiting: task"). */
function nodeSize(node, withStates) {
  const lines = nodeLines(node);
  if (withStates) lines.push("waiting: branches");
  const width = Math.max(textWidth(lines[0], 13), ...lines.slice(1).map((line) => textWidth(line, 11)));
  return { width: Math.max(96, width + 28), height: 26 + 15 * lines.length };
}

/** A state in words: "waiting: task", "not reached". */
export function stateText(state) {
  const text = String(state);
  return text.startsWith("waiting_") ? `waiting: ${text.slice(8)}` : text.replaceAll("_", " ");
}

/** The layout: a dagre graph with every node and edge of `graph`. */
function layoutGraph(graph, withStates) {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 28, ranksep: 36, edgesep: 14, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const parents = new Set(graph.nodes.filter((n) => n.parent && byId.has(n.parent)).map((n) => n.parent));
  const exitOf = (id) => (parents.has(id) ? `join\u0000${id}` : id);
  const containerOf = (node) => {
    if (!node.parent || !byId.has(node.parent)) return null;
    return node.branch !== null && node.branch !== undefined
      ? `branch\u0000${node.parent}\u0000${node.branch}`
      : `cluster\u0000${node.parent}`;
  };

  // Clusters first (a parallel step's box, and one box per branch).
  for (const id of parents) {
    const node = byId.get(id);
    g.setNode(`cluster\u0000${id}`, { cluster: true, label: nodeLines(node)[0] });
    const outer = containerOf(node);
    if (outer) g.setParent(`cluster\u0000${id}`, outer);
    g.setNode(`join\u0000${id}`, { width: 56, height: 22, join: true, of: id });
    g.setParent(`join\u0000${id}`, `cluster\u0000${id}`);
  }
  for (const node of graph.nodes) {
    if (node.parent && byId.has(node.parent) && node.branch !== null && node.branch !== undefined) {
      const branch = `branch\u0000${node.parent}\u0000${node.branch}`;
      if (!g.hasNode(branch)) {
        g.setNode(branch, { cluster: true, branch: true, label: node.branch });
        g.setParent(branch, `cluster\u0000${node.parent}`);
      }
    }
  }
  for (const node of graph.nodes) {
    g.setNode(node.id, { ...nodeSize(node, withStates), step: node });
    const container = parents.has(node.id) ? `cluster\u0000${node.id}` : containerOf(node);
    if (container) g.setParent(node.id, container);
  }

  graph.edges.forEach((edge, i) => {
    if (!byId.has(edge.from) || !byId.has(edge.to)) return;
    const from = edge.kind === "branch" ? edge.from : exitOf(edge.from);
    const text = edgeText(edge);
    const label = { edge, text };
    if (text) {
      label.width = textWidth(text, 11) + 8;
      label.height = 16;
      label.labelpos = "c";
    }
    g.setEdge(from, edge.to, label, `e${i}`);
  });

  // Each branch's last steps lead to the join (not the nodes beside the
  // flow: compensations, handlers).
  const flowKinds = new Set(["next", "decision", "default", "branch"]);
  for (const node of graph.nodes) {
    if (!node.parent || !parents.has(node.parent)) continue;
    if (node.kind === "compensation" || node.kind === "handler") continue;
    const stays = graph.edges.some((e) =>
      e.from === node.id && flowKinds.has(e.kind) && byId.has(e.to) && byId.get(e.to).parent === node.parent);
    if (!stays) g.setEdge(exitOf(node.id), `join\u0000${node.parent}`, { implicit: true }, `join-${node.id}`);
  }

  dagre.layout(g);
  return g;
}

function edgeText(edge) {
  if (edge.label) return edge.label;
  return edge.kind === "next" || edge.kind === "branch" ? "" : edge.kind.replace("_", " ");
}

/** An SVG path through dagre's points, rounded at the bends. */
function edgePath(points) {
  if (points.length < 3) return "M" + points.map((p) => `${p.x},${p.y}`).join(" L");
  const mid = (a, b) => `${(a.x + b.x) / 2},${(a.y + b.y) / 2}`;
  let d = `M${points[0].x},${points[0].y} L${mid(points[0], points[1])}`;
  for (let i = 1; i < points.length - 1; i++) {
    d += ` Q${points[i].x},${points[i].y} ${mid(points[i], points[i + 1])}`;
  }
  const last = points[points.length - 1];
  return `${d} L${last.x},${last.y}`;
}

/** The box that holds every node, edge point and label. */
function boundsOf(g) {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  const take = (x, y, w = 0, h = 0) => {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return;
    minX = Math.min(minX, x - w / 2);
    maxX = Math.max(maxX, x + w / 2);
    minY = Math.min(minY, y - h / 2);
    maxY = Math.max(maxY, y + h / 2);
  };
  for (const v of g.nodes()) {
    const n = g.node(v);
    take(n.x, n.y, n.width, n.height);
  }
  for (const e of g.edges()) {
    const label = g.edge(e);
    for (const p of label.points || []) take(p.x, p.y);
    if (label.text) take(label.x, label.y, label.width, label.height);
  }
  if (!Number.isFinite(minX)) return { x: 0, y: 0, width: 100, height: 40 };
  return { x: minX - 12, y: minY - 12, width: maxX - minX + 24, height: maxY - minY + 24 };
}

function arrowMarker(id, kind) {
  return svgEl("marker", {
    id, class: `marker kind-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, svgEl("path", { d: "M0,0 L10,5 L0,10 z" }));
}

/**
 * Draws `graph` as an SVG (id `graph`). Returns `{svg, setStates(steps,
 * current)}`: `steps` is /replay's {stepId: {state, runs}}; each step's
 * node gets class `state-<state>` (`state-not_reached` when absent), and
 * `current` when it runs or waits (or is in the `current` set). Without
 * `withStates` (a workflow, not an execution) the nodes have no state.
 * `options`: `withStates` (each node says its state in words) and
 * `onSelect({id, kind, state, runs})`, called when a node is chosen.
 */
function drawGraph(graph, { withStates = false, onSelect = null } = {}) {
  const g = layoutGraph(graph, withStates);
  const box = boundsOf(g);
  const prefix = `g${++graphCount}-`;
  const svg = svgEl("svg", {
    id: "graph", class: "graph", xmlns: SVG_NS, role: "group", "aria-label": "The workflow's steps",
    viewBox: `${box.x} ${box.y} ${box.width} ${box.height}`,
    width: Math.ceil(box.width), height: Math.ceil(box.height),
  });
  const kinds = ["next", "decision", "default", "branch", "on_error", "compensate", "handler", "implicit"];
  svg.append(svgEl("defs", {}, kinds.map((k) => arrowMarker(prefix + k, k))));

  const clusters = svgEl("g", { class: "clusters" });
  const edges = svgEl("g", { class: "edges" });
  const nodes = svgEl("g", { class: "nodes" });
  svg.append(clusters, edges, nodes);

  // Outer clusters before inner ones, so inner boxes are drawn on top.
  const depth = (v) => (g.parent(v) ? 1 + depth(g.parent(v)) : 0);
  const clusterIds = g.nodes().filter((v) => g.node(v).cluster).sort((a, b) => depth(a) - depth(b));
  for (const v of clusterIds) {
    const n = g.node(v);
    clusters.append(svgEl("g", { class: n.branch ? "cluster branch" : "cluster" },
      svgEl("rect", { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: 10 }),
      svgEl("text", { x: n.x - n.width / 2 + 8, y: n.y - n.height / 2 + 13, text: n.label })));
  }

  for (const e of g.edges()) {
    const label = g.edge(e);
    if (!label.points) continue;
    const kind = label.implicit ? "implicit" : label.edge.kind;
    const group = svgEl("g", { class: `edge kind-${kind}` },
      svgEl("path", { d: edgePath(label.points), "marker-end": `url(#${prefix}${kind})` }));
    if (label.text) {
      group.append(svgEl("text", { x: label.x, y: label.y + 4, "text-anchor": "middle", text: label.text }));
    }
    edges.append(group);
  }

  const stepNodes = new Map();
  for (const v of g.nodes()) {
    const n = g.node(v);
    if (n.cluster) continue;
    if (n.join) {
      nodes.append(svgEl("g", { class: "join", transform: `translate(${n.x},${n.y})` },
        svgEl("rect", { x: -n.width / 2, y: -n.height / 2, width: n.width, height: n.height, rx: 11 }),
        svgEl("text", { y: 4, "text-anchor": "middle", text: "join" })));
      continue;
    }
    const step = n.step;
    const base = `node kind-${step.kind}`;
    const title = svgEl("title", { text: `${step.id} (${step.kind})` });
    const lines = nodeLines(step);
    const top = -n.height / 2 + 24;
    const group = svgEl("g", {
      class: withStates ? `${base} state-not_reached` : base, "data-step": step.id, transform: `translate(${n.x},${n.y})`,
      tabindex: 0, role: "button", "aria-label": `${step.id} (${step.kind})`,
    },
      title,
      svgEl("rect", { x: -n.width / 2, y: -n.height / 2, width: n.width, height: n.height, rx: 8 }),
      lines.map((line, i) => svgEl("text", { class: i ? "detail" : "label", y: top + 15 * i, "text-anchor": "middle", text: line })));
    const runs = svgEl("text", { class: "runs", x: n.width / 2 - 6, y: -n.height / 2 + 12, "text-anchor": "end" });
    const stateLine = withStates
      ? svgEl("text", { class: "state", y: top + 15 * lines.length, "text-anchor": "middle", text: "not reached" })
      : null;
    group.append(runs);
    if (stateLine) group.append(stateLine);
    nodes.append(group);
    const entry = { group, base, title, runs, stateLine, step, state: "not_reached", runCount: 0 };
    stepNodes.set(step.id, entry);
    const choose = () => select(entry);
    group.addEventListener("click", choose);
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        choose();
      }
    });
  }

  let selected = null;
  function select(entry) {
    if (selected) selected.group.classList.remove("selected");
    selected = entry;
    entry.group.classList.add("selected");
    if (onSelect) onSelect({ id: entry.step.id, kind: entry.step.kind, state: entry.state, runs: entry.runCount });
  }

  function setStates(steps, current = new Set()) {
    for (const [id, node] of stepNodes) {
      const info = steps && steps[id];
      const state = info && info.state ? String(info.state) : "not_reached";
      const isCurrent = state === "running" || state.startsWith("waiting_") || current.has(id);
      node.state = state;
      node.runCount = info ? info.runs : 0;
      node.group.setAttribute("class", `${node.base} state-${state}${isCurrent ? " current" : ""}${node === selected ? " selected" : ""}`);
      const runs = info && info.runs > 1 ? `×${info.runs}` : "";
      node.runs.textContent = runs;
      const said = `${id} (${node.step.kind}): ${stateText(state)}${info ? `, entered ${info.runs} ${info.runs === 1 ? "time" : "times"}` : ""}${isCurrent ? ", current" : ""}`;
      node.title.textContent = said;
      node.group.setAttribute("aria-label", said);
      if (node.stateLine) node.stateLine.textContent = stateText(state);
    }
    if (selected && onSelect) onSelect({ id: selected.step.id, kind: selected.step.kind, state: selected.state, runs: selected.runCount });
  }

  return { svg, setStates };
}

/**
 * Fetches and draws a version's graph into `container`; null if it
 * cannot. `options` as drawGraph's.
 */
export async function showGraph(container, name, version, options = {}) {
  let graph;
  try {
    graph = await api(`/v1/workflows/${enc(name)}/versions/${enc(version)}/graph`);
  } catch (e) {
    container.replaceChildren(el("p", { class: "muted", text: "The workflow's graph is not available." }));
    if (!(e instanceof ApiError)) reportFailure(e);
    return null;
  }
  if (typeof dagre === "undefined") {
    container.replaceChildren(el("p", { class: "problem", text: "The graph layout library (/ui/dagre.min.js) did not load." }));
    return null;
  }
  try {
    const drawn = drawGraph(graph, options);
    container.replaceChildren(drawn.svg);
    return drawn;
  } catch (e) {
    console.error(e);
    container.replaceChildren(el("p", { class: "problem", text: `The graph could not be laid out: ${e.message}` }));
    return null;
  }
}
