/*
 * retrace dashboard: app.js
 *
 * Owns everything the dashboard does in the browser: hash routing between
 * its pages, every call to the HTTP API (one function, `api`), reading the
 * Server-Sent Events streams (`openStream`, over fetch so that it can send
 * the access token), the workflow graph drawn as SVG from dagre's layout
 * (`drawGraph`), and one section per page. It uses no framework and no
 * build step; the only library is dagre (vendor/dagre.min.js, served as
 * /ui/dagre.min.js; the global `dagre`).
 *
 * The server's Content-Security-Policy allows scripts and styles from
 * /ui/ only, so this file builds the DOM with createElement (never
 * innerHTML with data, never inline handlers or style attributes).
 *
 * Sections:
 *   1. DOM and formatting helpers
 *   2. The access token and the error bar
 *   3. api(): every request
 *   4. openStream(): SSE over fetch, with Last-Event-ID reconnects
 *   5. Pages and the router
 *   6. The confirmation dialog
 *   7. The workflow graph (dagre → SVG)
 *   8. Page: executions            #/executions
 *   9. Page: one execution         #/executions/<id>
 *  10. Pages: workflows            #/workflows, #/workflows/<name>[/<version>]
 *  11. Page: define a workflow     #/define
 *  12. Page: agents and queues     #/agents
 *  13. Page: metrics               #/metrics
 */
"use strict";

/* ---------------------------------------------------------------------
 * 1. DOM and formatting helpers
 * ------------------------------------------------------------------- */

const SVG_NS = "http://www.w3.org/2000/svg";

/** Sets attributes: `text` is textContent, `on<event>` a listener. */
function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function appendAll(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

/** An HTML element: el("a", {href: "#/x", class: "y"}, "text", child). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

/** An SVG element, like el(). */
function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** "2026-01-31 10:00:00" in the browser's time zone. */
function formatTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A time element: local time shown, the server's RFC 3339 in its title. */
function timeEl(iso) {
  return el("time", { datetime: iso || undefined, title: iso || undefined, text: formatTime(iso) });
}

function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(ms / 3600000)} h ${Math.round((ms % 3600000) / 60000)} min`;
}

function formatPercent(ratio) {
  return typeof ratio === "number" ? `${(ratio * 100).toFixed(1)} %` : "—";
}

function formatJson(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** A table's head row. */
function tableHead(titles) {
  return el("thead", {}, el("tr", {}, titles.map((title) => el("th", { text: title }))));
}

/** A status as a coloured badge. */
function badge(status, attrs = {}) {
  return el("span", { ...attrs, class: `badge status-${status}`, text: status });
}

/** An execution id, shortened for tables (the whole id in the title). */
function shortId(id) {
  return id.length > 13 ? `${id.slice(0, 13)}…` : id;
}

function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Parses a JSON text field: `{value}` or `{problem}`; empty is `{empty}`. */
function parseJsonField(text) {
  if (text.trim() === "") return { empty: true };
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { problem: `not JSON: ${e.message}` };
  }
}

/**
 * Runs `fn` one call at a time: a call made while one runs is kept (the
 * last one wins) and runs after it. For refreshes that events trigger in
 * bursts, and for a slider dragged faster than the server answers.
 */
function coalesce(fn) {
  let running = false;
  let pending = null;
  const run = async (...args) => {
    if (running) {
      pending = args;
      return;
    }
    running = true;
    try {
      await fn(...args);
    } catch (e) {
      reportFailure(e);
    } finally {
      running = false;
    }
    if (pending) {
      const next = pending;
      pending = null;
      run(...next);
    }
  };
  return run;
}

/* ---------------------------------------------------------------------
 * 2. The access token and the error bar
 * ------------------------------------------------------------------- */

const TOKEN_KEY = "retrace.token";

function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** The promise every request refused with 401 waits on while the form shows. */
let tokenWait = null;
let tokenGiven = null;

/** Shows the token form (saying `message`); resolves once a token is given. */
function askForToken(message) {
  if (!tokenWait) {
    tokenWait = new Promise((resolve) => {
      tokenGiven = resolve;
    });
  }
  showTokenForm(message);
  return tokenWait;
}

function showTokenForm(message) {
  $("token-message").textContent = message || "This server requires an access token.";
  $("token-panel").hidden = false;
  $("token-input").value = "";
  $("token-input").focus();
}

function setUpTokenForm() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-panel").hidden = true;
    if (tokenGiven) {
      const given = tokenGiven;
      tokenWait = null;
      tokenGiven = null;
      given();
    } else {
      route(); // a token changed by hand: show the page with it
    }
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-input").value = "";
    $("token-message").textContent = "Token forgotten. Give another one, or none if the server needs none.";
  });
  $("token-button").addEventListener("click", () => {
    const panel = $("token-panel");
    if (panel.hidden) showTokenForm(currentToken() ? "Replace the access token this tab sends." : "Give an access token for this tab to send.");
    else if (!tokenWait) panel.hidden = true;
  });
}

/** A failed request, with the server's error body. */
class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

/** The ApiError in a failed response (`{"error": {code, message, details?}}`). */
async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && body.error;
  if (error && typeof error.message === "string") {
    return new ApiError(response.status, error.code || "error", error.message, error.details);
  }
  return new ApiError(response.status, "http_" + response.status, `${response.status} ${response.statusText}`);
}

function showError(error) {
  const text = error instanceof ApiError && error.status
    ? `${error.status} ${error.code}: ${error.message}`
    : error.message || String(error);
  $("error-text").textContent = text;
  const details = (error.details || []).map((d) =>
    el("li", {}, d.path ? el("code", { text: d.path }) : null, d.path ? ": " : "", d.message || JSON.stringify(d)));
  $("error-details").replaceChildren(...details);
  $("error-bar").hidden = false;
}

function clearError() {
  $("error-bar").hidden = true;
}

/** Shows what went wrong unless `api` has already shown it. */
function reportFailure(error) {
  if (!error || error.name === "AbortError") return;
  if (error instanceof ApiError && error.shown) return;
  console.error(error);
  showError(error);
}

/* ---------------------------------------------------------------------
 * 3. api(): every request
 * ------------------------------------------------------------------- */

/** How far the server's clock is ahead of the browser's (from `Date`), in ms. */
let serverClockOffset = 0;

function serverNow() {
  return Date.now() + serverClockOffset;
}

function noteServerClock(response) {
  const date = Date.parse(response.headers.get("date") || "");
  if (!Number.isNaN(date)) serverClockOffset = date - Date.now();
}

function requestInit(options, token) {
  const method = options.method || "GET";
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const init = { method, headers, cache: "no-store", signal: options.signal };
  if (method !== "GET") {
    // Every POST says its type, even with no body (the server requires it).
    if (options.text !== undefined) {
      headers.set("Content-Type", options.contentType || "application/json");
      init.body = options.text;
    } else {
      headers.set("Content-Type", "application/json");
      if (options.body !== undefined) init.body = JSON.stringify(options.body);
    }
  }
  return init;
}

/**
 * Every API call. `options`: `method`, `body` (sent as JSON), or `text`
 * with `contentType`, `headers`, `signal`, and `quiet` (do not show a
 * failure in the error bar: the caller shows it). Adds the access token
 * when one was given; on 401 shows the token form and retries once a
 * token is given. Resolves to the parsed JSON body (null for 204); throws
 * an ApiError with the server's error body otherwise.
 */
async function api(path, options = {}) {
  for (;;) {
    const token = currentToken();
    let response;
    try {
      response = await fetch(path, requestInit(options, token));
    } catch (e) {
      if (e.name === "AbortError") throw e;
      const error = new ApiError(0, "network", `cannot reach the server (${e.message})`);
      if (!options.quiet) showError(error);
      error.shown = !options.quiet;
      throw error;
    }
    noteServerClock(response);
    if (response.status === 401) {
      const error = await errorOf(response);
      if (error.code !== "invalid_signature") {
        // A token given meanwhile is tried at once; otherwise ask for one.
        if (currentToken() === token) {
          await askForToken(token ? `The token was refused: ${error.message}` : error.message);
        }
        continue;
      }
      if (!options.quiet) showError(error);
      error.shown = !options.quiet;
      throw error;
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (!options.quiet) showError(error);
      error.shown = !options.quiet;
      throw error;
    }
    if (response.status === 204) return null;
    const type = response.headers.get("content-type") || "";
    return type.includes("json") ? response.json() : response.text();
  }
}

/* ---------------------------------------------------------------------
 * 4. openStream(): SSE over fetch
 *
 * EventSource cannot send an Authorization header, so streams are read
 * with fetch and parsed here: `id:`, `event:` and `data:` lines, a blank
 * line ends a frame, lines starting with `:` are comments (keep-alives).
 * After a drop it reconnects with `Last-Event-ID`, so every event arrives
 * once; a 204 means the stream has nothing more (an execution that ended).
 * ------------------------------------------------------------------- */

/**
 * Opens `path` as a stream. `handlers.onEvent({id, type, data})` for each
 * frame (data parsed as JSON), `handlers.onEnd()` once the server says
 * there is nothing more (204) or refuses the stream. `lastId` resumes
 * after that id. Returns `{close()}`.
 */
function openStream(path, handlers, lastId = null) {
  const stream = { closed: false, lastId, controller: null };
  stream.close = () => {
    stream.closed = true;
    if (stream.controller) stream.controller.abort();
  };
  followStream(path, stream, handlers).catch(reportFailure);
  return stream;
}

async function followStream(path, stream, handlers) {
  let retryMs = 500;
  while (!stream.closed) {
    stream.controller = new AbortController();
    const token = currentToken();
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (stream.lastId !== null) headers["Last-Event-ID"] = String(stream.lastId);
    let response = null;
    try {
      response = await fetch(path, { headers, cache: "no-store", signal: stream.controller.signal });
    } catch {
      response = null; // the server is away: try again, more slowly
    }
    if (stream.closed) return;
    if (response && response.status === 204) {
      if (handlers.onEnd) handlers.onEnd();
      return;
    }
    if (response && response.status === 401) {
      const error = await errorOf(response);
      if (currentToken() === token) await askForToken(error.message);
      continue;
    }
    if (response && !response.ok) {
      const error = await errorOf(response);
      showError(error);
      if (response.status !== 429 && response.status < 500) {
        if (handlers.onEnd) handlers.onEnd(error);
        return;
      }
    }
    if (response && response.ok) {
      retryMs = 500;
      await readFrames(response.body, stream, handlers);
      if (stream.closed) return;
      continue; // the stream ended or dropped: resume after the last id
    }
    await pause(retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  }
}

/** Reads frames from `body` until it ends or drops. */
async function readFrames(body, stream, handlers) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const frame = { id: null, type: "", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = lineEnd(buffer)) !== null) {
        const line = buffer.slice(0, end.at);
        buffer = buffer.slice(end.at + end.length);
        readLine(line, frame, stream, handlers);
      }
    }
  } catch {
    // aborted (the page changed) or dropped: the caller decides
  } finally {
    try {
      reader.releaseLock();
    } catch {
      // already released
    }
  }
}

/** Where the first complete line of `buffer` ends (CR, LF or CRLF), or null. */
function lineEnd(buffer) {
  const match = /\r\n|\r|\n/.exec(buffer);
  if (!match) return null;
  // A CR at the very end may be half of a CRLF: wait for the next chunk.
  if (match[0] === "\r" && match.index === buffer.length - 1) return null;
  return { at: match.index, length: match[0].length };
}

function readLine(line, frame, stream, handlers) {
  if (line === "") {
    dispatchFrame(frame, stream, handlers);
    return;
  }
  if (line.startsWith(":")) return; // a comment: keep-alive
  const colon = line.indexOf(":");
  const field = colon < 0 ? line : line.slice(0, colon);
  let value = colon < 0 ? "" : line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  if (field === "id") frame.id = value;
  else if (field === "event") frame.type = value;
  else if (field === "data") frame.data.push(value);
}

function dispatchFrame(frame, stream, handlers) {
  const { id, type } = frame;
  const text = frame.data.join("\n");
  const hasData = frame.data.length > 0;
  frame.id = null;
  frame.type = "";
  frame.data = [];
  if (id !== null) stream.lastId = id;
  if (!hasData || stream.closed) return;
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    // kept as text
  }
  if (type === "error") {
    // A journal error ends the stream; its data is an error body.
    const error = data && data.error ? new ApiError(500, data.error.code, data.error.message) : new Error(text);
    showError(error);
    return;
  }
  try {
    handlers.onEvent({ id, type: type || "message", data });
  } catch (e) {
    reportFailure(e);
  }
}

/* ---------------------------------------------------------------------
 * 5. Pages and the router
 *
 * Each visit to a route is a `Page`: its own root element under <main>,
 * `alive` until the route changes, and cleanups (streams to close,
 * timers to stop) run when it is left. Asynchronous work checks
 * `page.alive` before it draws.
 * ------------------------------------------------------------------- */

class Page {
  constructor(root) {
    this.root = root;
    this.alive = true;
    this.cleanups = [];
  }

  onLeave(fn) {
    this.cleanups.push(fn);
  }

  leave() {
    this.alive = false;
    for (const fn of this.cleanups) {
      try {
        fn();
      } catch (e) {
        console.error(e);
      }
    }
    this.cleanups = [];
  }

  /** Opens a stream that closes when the page is left. */
  stream(path, handlers, lastId) {
    const stream = openStream(path, handlers, lastId);
    this.onLeave(() => stream.close());
    return stream;
  }

  /** Runs `fn` now and then every `ms` (after each run ends) while shown. */
  every(ms, fn) {
    let timer = null;
    const tick = async () => {
      if (!this.alive) return;
      try {
        await fn();
      } catch (e) {
        reportFailure(e);
      }
      if (this.alive) timer = setTimeout(tick, ms);
    };
    this.onLeave(() => clearTimeout(timer));
    tick();
  }
}

const ROUTES = [
  { pattern: /^#\/executions\/([^/?]+)$/, nav: "executions", show: (page, id) => executionPage(page, decodeURIComponent(id)) },
  { pattern: /^#\/executions(?:\?(.*))?$/, nav: "executions", show: (page, query) => executionsPage(page, new URLSearchParams(query || "")) },
  { pattern: /^#\/workflows$/, nav: "workflows", show: (page) => workflowsPage(page) },
  { pattern: /^#\/workflows\/([^/]+)$/, nav: "workflows", show: (page, name) => workflowPage(page, decodeURIComponent(name)) },
  {
    pattern: /^#\/workflows\/([^/]+)\/([^/]+)$/,
    nav: "workflows",
    show: (page, name, version) => versionPage(page, decodeURIComponent(name), decodeURIComponent(version)),
  },
  { pattern: /^#\/define$/, nav: "define", show: (page) => definePage(page) },
  { pattern: /^#\/agents$/, nav: "agents", show: (page) => agentsPage(page) },
  { pattern: /^#\/metrics$/, nav: "metrics", show: (page) => metricsPage(page) },
];

let currentPage = null;

function route() {
  if (currentPage) currentPage.leave();
  clearError();
  const hash = location.hash && location.hash !== "#" && location.hash !== "#/" ? location.hash : "#/executions";
  const root = el("div", { class: "page" });
  $("main").replaceChildren(root);
  const page = new Page(root);
  currentPage = page;
  for (const { pattern, nav, show } of ROUTES) {
    const match = pattern.exec(hash);
    if (!match) continue;
    highlightNav(nav);
    Promise.resolve()
      .then(() => show(page, ...match.slice(1)))
      .catch((e) => {
        if (page.alive) reportFailure(e);
      });
    return;
  }
  highlightNav(null);
  root.append(el("h1", { text: "No such page" }), el("p", {}, el("a", { href: "#/executions", text: "Executions" })));
}

function highlightNav(name) {
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.nav === name);
  }
}

/* ---------------------------------------------------------------------
 * 6. The confirmation dialog
 * ------------------------------------------------------------------- */

let confirmation = null; // {resolve, check} while the dialog is open

/**
 * Asks in the page's <dialog id="confirm">. `extra`: elements shown above
 * the reason; `check()`: a problem to show (the dialog stays open) or
 * null. Resolves to `{reason}` (reason "" when none) or null if dismissed.
 */
function confirmAction({ title, text, okLabel = "Confirm", extra = [], check = () => null }) {
  const dialog = $("confirm");
  if (confirmation) finishConfirmation(null);
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text || "";
  $("confirm-extra").replaceChildren(...extra);
  $("confirm-reason").value = "";
  $("confirm-problem").hidden = true;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    confirmation = { resolve, check };
    dialog.showModal();
    $("confirm-reason").focus();
  });
}

function finishConfirmation(result) {
  const pending = confirmation;
  confirmation = null;
  if ($("confirm").open) $("confirm").close();
  if (pending) pending.resolve(result);
}

function setUpConfirmDialog() {
  $("confirm-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!confirmation) return;
    if (!event.submitter || event.submitter.value !== "ok") {
      finishConfirmation(null);
      return;
    }
    const problem = confirmation.check();
    if (problem) {
      $("confirm-problem").textContent = problem;
      $("confirm-problem").hidden = false;
      return;
    }
    finishConfirmation({ reason: $("confirm-reason").value.trim() });
  });
  // Escape closes the dialog without a submit.
  $("confirm").addEventListener("close", () => {
    if (confirmation) finishConfirmation(null);
  });
}

/* ---------------------------------------------------------------------
 * 7. The workflow graph (dagre → SVG)
 *
 * Graph JSON (GET /v1/workflows/{name}/versions/{version}/graph):
 * nodes {id, label, kind, parent, branch}, edges {from, to, kind, label}.
 * Dagre cannot route edges to a cluster node, so a parallel step with
 * branches is drawn as a box (a cluster) holding the step's own node (its
 * fork: edges in, branch edges out), one box per branch, and a join node
 * its outgoing edges leave from; each branch's last steps lead to the join.
 * ------------------------------------------------------------------- */

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

function nodeSize(node) {
  const lines = nodeLines(node);
  const width = Math.max(textWidth(lines[0], 13), ...lines.slice(1).map((line) => textWidth(line, 11)));
  return { width: Math.max(96, width + 28), height: 26 + 15 * lines.length };
}

/** The layout: a dagre graph with every node and edge of `graph`. */
function layoutGraph(graph) {
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
    g.setNode(node.id, { ...nodeSize(node), step: node });
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
 * `current` when it runs or waits (or is in the `current` set).
 */
function drawGraph(graph) {
  const g = layoutGraph(graph);
  const box = boundsOf(g);
  const prefix = `g${++graphCount}-`;
  const svg = svgEl("svg", {
    id: "graph", class: "graph", xmlns: SVG_NS, role: "img",
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
    const group = svgEl("g", { class: `${base} state-not_reached`, "data-step": step.id, transform: `translate(${n.x},${n.y})` },
      title,
      svgEl("rect", { x: -n.width / 2, y: -n.height / 2, width: n.width, height: n.height, rx: 8 }),
      lines.map((line, i) => svgEl("text", { class: i ? "detail" : "label", y: top + 15 * i, "text-anchor": "middle", text: line })));
    const runs = svgEl("text", { class: "runs", x: n.width / 2 - 6, y: -n.height / 2 + 12, "text-anchor": "end" });
    group.append(runs);
    nodes.append(group);
    stepNodes.set(step.id, { group, base, title, runs, step });
  }

  function setStates(steps, current = new Set()) {
    for (const [id, node] of stepNodes) {
      const info = steps && steps[id];
      const state = info && info.state ? String(info.state) : "not_reached";
      const isCurrent = state === "running" || state.startsWith("waiting_") || current.has(id);
      node.group.setAttribute("class", `${node.base} state-${state}${isCurrent ? " current" : ""}`);
      const runs = info && info.runs > 1 ? `×${info.runs}` : "";
      node.runs.textContent = runs;
      node.title.textContent = `${id} (${node.step.kind}): ${state.replace("_", " ")}${info ? `, runs: ${info.runs}` : ""}`;
    }
  }

  return { svg, setStates };
}

/** Fetches and draws a version's graph into `container`; null if it cannot. */
async function showGraph(container, name, version) {
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
    const drawn = drawGraph(graph);
    container.replaceChildren(drawn.svg);
    return drawn;
  } catch (e) {
    console.error(e);
    container.replaceChildren(el("p", { class: "problem", text: `The graph could not be laid out: ${e.message}` }));
    return null;
  }
}

/* ---------------------------------------------------------------------
 * 8. Page: executions (#/executions?workflow=&status=&from=&to=&id=&order=)
 * ------------------------------------------------------------------- */

const STATUSES = ["running", "paused", "compensating", "compensation_failed", "completed", "failed", "compensated", "cancelled", "terminated"];
const PAGE_SIZE = 50;

/** The global stream's events that change an execution's row. */
const ROW_EVENTS = [
  "execution_started", "execution_paused", "execution_resumed", "execution_redriven",
  "execution_completed", "execution_failed", "execution_cancelled", "execution_terminated",
  "execution_compensated", "compensation_began", "compensation_failed", "compensation_retried",
  "compensation_skipped", "held_step_retried", "held_step_skipped",
];

function filtersOf(query) {
  return {
    workflow: query.get("workflow") || "",
    status: query.get("status") || "",
    from: query.get("from") || "",
    to: query.get("to") || "",
    id: query.get("id") || "",
    order: query.get("order") === "oldest" ? "oldest" : "newest",
  };
}

function listPath(filters, cursor) {
  const q = new URLSearchParams();
  if (filters.workflow) q.set("workflow", filters.workflow);
  if (filters.status) q.set("status", filters.status);
  if (filters.id) q.set("idPrefix", filters.id);
  if (filters.from) q.set("startedFrom", filters.from);
  if (filters.to) q.set("startedTo", filters.to);
  if (filters.order === "newest") q.set("order", "newest");
  q.set("limit", String(PAGE_SIZE));
  if (cursor) q.set("cursor", cursor);
  return `/v1/executions?${q}`;
}

/** Whether an execution belongs in the table under `filters`. */
function matchesFilters(execution, filters) {
  if (filters.workflow && execution.workflow !== filters.workflow) return false;
  if (filters.status && execution.status !== filters.status) return false;
  if (!matchesIdPrefix(execution.id, filters.id)) return false;
  const started = Date.parse(execution.startTime);
  if (filters.from && started < Date.parse(filters.from)) return false;
  if (filters.to && started > Date.parse(filters.to)) return false;
  return true;
}

function matchesIdPrefix(id, prefix) {
  if (!prefix) return true;
  const want = prefix.replaceAll("-", "").toLowerCase();
  return id.replaceAll("-", "").toLowerCase().startsWith(want);
}

/** "2026-01-31T10:00" (local, for datetime-local) from RFC 3339, and back. */
function toLocalInput(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function filterForm(filters, workflowNames) {
  const statusSelect = el("select", { id: "filter-status", name: "status" },
    el("option", { value: "", text: "any status" }),
    STATUSES.map((s) => el("option", { value: s, text: s, selected: s === filters.status })));
  const orderSelect = el("select", { id: "filter-order", name: "order" },
    el("option", { value: "newest", text: "newest first", selected: filters.order === "newest" }),
    el("option", { value: "oldest", text: "oldest first", selected: filters.order === "oldest" }));
  const form = el("form", { id: "filters", class: "filters" },
    el("label", {}, "Workflow ", el("input", { id: "filter-workflow", name: "workflow", list: "workflow-names", value: filters.workflow, placeholder: "any" })),
    el("datalist", { id: "workflow-names" }, workflowNames.map((n) => el("option", { value: n }))),
    el("label", {}, "Status ", statusSelect),
    el("label", {}, "Started from ", el("input", { id: "filter-from", name: "from", type: "datetime-local", value: toLocalInput(filters.from) })),
    el("label", {}, "to ", el("input", { id: "filter-to", name: "to", type: "datetime-local", value: toLocalInput(filters.to) })),
    el("label", {}, "Id prefix ", el("input", { id: "filter-id", name: "id", value: filters.id, placeholder: "01a1fb96", pattern: "[0-9a-fA-F\\-]*", size: 12 })),
    el("label", {}, "Order ", orderSelect),
    el("button", { type: "submit", text: "Filter" }),
    el("a", { href: "#/executions", class: "button quiet", text: "Clear" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    const set = (key, value) => value && q.set(key, value);
    set("workflow", $("filter-workflow").value.trim());
    set("status", $("filter-status").value);
    set("from", fromLocalInput($("filter-from").value));
    set("to", fromLocalInput($("filter-to").value));
    set("id", $("filter-id").value.trim());
    if ($("filter-order").value === "oldest") q.set("order", "oldest");
    const hash = `#/executions${q.toString() ? "?" + q : ""}`;
    if (location.hash === hash) route();
    else location.hash = hash;
  });
  return form;
}

function executionRow(execution) {
  const row = el("tr", { "data-id": execution.id });
  fillRow(row, execution);
  return row;
}

function fillRow(row, execution) {
  row.replaceChildren(
    el("td", { class: "id" }, el("a", { href: `#/executions/${enc(execution.id)}`, title: execution.id, text: execution.id })),
    el("td", { class: "workflow" }, el("a", { href: `#/workflows/${enc(execution.workflow)}`, text: execution.workflow })),
    el("td", { class: "status" }, badge(execution.status)),
    el("td", { class: "started" }, timeEl(execution.startTime)));
  row.dataset.status = execution.status;
}

async function executionsPage(page, query) {
  const filters = filtersOf(query);
  const root = page.root;
  root.append(el("h1", { text: "Executions" }));
  const workflows = await api("/v1/workflows", { quiet: true }).catch(() => ({ workflows: [] }));
  if (!page.alive) return;
  root.append(filterForm(filters, (workflows.workflows || []).map((w) => w.name)));

  const body = el("tbody");
  const table = el("table", { id: "executions", class: "list" },
    el("thead", {}, el("tr", {}, el("th", { text: "Id" }), el("th", { text: "Workflow" }), el("th", { text: "Status" }), el("th", { text: "Started" }))),
    body);
  const empty = el("p", { id: "executions-empty", class: "muted", text: "No executions match.", hidden: true });
  const more = el("button", { id: "more", type: "button", hidden: true, text: "More" });
  root.append(table, empty, more);

  const list = { rows: new Map(), cursor: null, position: null, newest: filters.order === "newest" };
  const refreshEmpty = () => {
    empty.hidden = list.rows.size > 0;
  };

  const loadPage = async () => {
    const answer = await api(listPath(filters, list.cursor));
    if (!page.alive) return;
    for (const execution of answer.executions) {
      if (list.rows.has(execution.id)) continue;
      const row = executionRow(execution);
      list.rows.set(execution.id, row);
      body.append(row);
    }
    list.cursor = answer.nextCursor;
    // The first page's position: the stream shows every change after it.
    if (list.position === null) list.position = answer.position;
    more.hidden = !list.cursor;
    refreshEmpty();
  };
  more.addEventListener("click", () => loadPage().catch(reportFailure));

  await loadPage();
  if (!page.alive) return;
  followExecutions(page, filters, list, body, refreshEmpty);
}

/**
 * Keeps the table live from the global stream: on an event that changes
 * an execution's status, refetch that execution and upsert (or drop) its
 * row. The stream starts after the position the list was read at, so it
 * shows exactly the changes since (list, then watch).
 */
function followExecutions(page, filters, list, body, refreshEmpty) {
  const queue = new Set();
  const refetch = coalesce(async () => {
    while (queue.size && page.alive) {
      const id = queue.values().next().value;
      queue.delete(id);
      let execution;
      try {
        execution = await api(`/v1/executions/${enc(id)}`, { quiet: true });
      } catch {
        continue;
      }
      if (page.alive) upsertRow(execution, filters, list, body);
      refreshEmpty();
    }
  });
  const q = new URLSearchParams({ type: ROW_EVENTS.join(",") });
  if (filters.workflow) q.set("workflow", filters.workflow);
  page.stream(`/v1/events/stream?${q}`, {
    onEvent({ data }) {
      if (!data || !data.executionId) return;
      // An execution not shown can only come in by starting, or, under a
      // status filter, by reaching that status (the other filters hold
      // for good or never).
      const shown = list.rows.has(data.executionId);
      if (!shown && data.type !== "execution_started" && !filters.status) return;
      if (!shown && !matchesIdPrefix(data.executionId, filters.id)) return;
      queue.add(data.executionId);
      refetch();
    },
  }, list.position);
}

function upsertRow(execution, filters, list, body) {
  const existing = list.rows.get(execution.id);
  if (!matchesFilters(execution, filters)) {
    if (existing) {
      existing.remove();
      list.rows.delete(execution.id);
    }
    return;
  }
  if (existing) {
    fillRow(existing, execution);
    return;
  }
  // Rows are in id order (ids are time-ordered): find its place.
  const rows = [...body.children];
  const before = rows.find((row) => (list.newest ? row.dataset.id < execution.id : row.dataset.id > execution.id));
  if (!before && list.cursor) return; // it belongs on a page not loaded yet
  const row = executionRow(execution);
  row.classList.add("fresh");
  body.insertBefore(row, before || null);
  list.rows.set(execution.id, row);
}

/* ---------------------------------------------------------------------
 * 9. Page: one execution (#/executions/<id>)
 *
 * Live by default: the execution's stream appends each event to the
 * timeline and refreshes the view. Time travel (#travel) shows the
 * execution as it stood after event N (GET /replay?until=N) until "live".
 * ------------------------------------------------------------------- */

const TERMINAL_EVENTS = new Set(["execution_completed", "execution_failed", "execution_cancelled", "execution_terminated", "execution_compensated"]);
const ENDED = new Set(["completed", "failed", "cancelled", "terminated", "compensated"]);

/** The commands offered for a status (the server refuses others anyway). */
function commandsFor(view) {
  const held = (view.failedSteps || []).length > 0;
  switch (view.status) {
    case "running": return ["pause", "cancel", "terminate"];
    case "paused": return held ? ["retry", "skip", "cancel", "terminate"] : ["resume", "cancel", "terminate"];
    case "compensating": return ["terminate"];
    case "compensation_failed": return ["retry", "skip", "terminate"];
    case "failed": return ["redrive"];
    default: return [];
  }
}

/** Each command: what the dialog says, and how it is sent. */
const COMMANDS = {
  pause: { title: "Pause", text: "Stop dispatching new work; results of tasks already out are still recorded.", reasonInBody: true },
  resume: { title: "Resume", text: "Continue the paused execution." },
  cancel: { title: "Cancel", text: "End the execution.", reasonInBody: true, compensate: true },
  terminate: { title: "Terminate", text: "End the execution at once, without compensation.", reasonInBody: true },
  retry: { title: "Retry", text: "Run the failed step (or compensation) again." },
  skip: { title: "Skip", text: "Skip the failed step (or compensation); the output stands for its result.", output: true },
  redrive: { title: "Redrive", text: "Reopen the failed execution at the step that failed." },
};

async function executionPage(page, id) {
  const root = page.root;
  const view = await api(`/v1/executions/${enc(id)}`);
  if (!page.alive) return;

  const x = {
    page, id, live: view, shown: view, events: [], lastSeq: 0, at: null,
    graph: null, stream: null, ui: executionLayout(root, view),
  };
  renderHeader(x);
  renderActions(x);
  renderPanes(x, view, null);

  const [, graph] = await Promise.all([
    loadVerification(x),
    showGraph(x.ui.graphBox, view.workflow, view.version),
    loadHistory(x),
  ]);
  if (!page.alive) return;
  x.graph = graph;
  x.ui.slider.addEventListener("input", () => travelTo(x, Number(x.ui.slider.value)));
  x.ui.prev.addEventListener("click", () => travelTo(x, (x.at ?? x.lastSeq) - 1));
  x.ui.next.addEventListener("click", () => travelTo(x, (x.at ?? x.lastSeq) + 1));
  x.ui.liveButton.addEventListener("click", () => goLive(x));
  x.refreshLive = coalesce(() => refreshLive(x));
  x.travel = coalesce((seq) => showTravel(x, seq));
  await refreshLive(x);
  followExecution(x);
}

function executionLayout(root, view) {
  const ui = {
    status: el("span", { id: "status" }),
    asOf: el("span", { id: "as-of", class: "muted" }),
    chain: el("span", { id: "chain", class: "chain pending", text: "checking the chain…" }),
    meta: el("dl", { class: "meta" }),
    actions: el("section", { id: "actions", class: "actions" }),
    slider: el("input", { id: "travel-slider", type: "range", min: 1, max: 1, value: 1, step: 1, "aria-label": "Event" }),
    prev: el("button", { id: "travel-prev", type: "button", title: "The event before", text: "◀" }),
    next: el("button", { id: "travel-next", type: "button", title: "The event after", text: "▶" }),
    liveButton: el("button", { id: "travel-live", type: "button", text: "Live" }),
    travelAt: el("span", { id: "travel-at", text: "" }),
    graphBox: el("div", { id: "graph-box", class: "graph-box" }, el("p", { class: "muted", text: "Loading the graph…" })),
    current: el("div", { id: "current-steps" }),
    failed: el("div", { id: "failed-steps" }),
    variables: el("pre", { id: "variables", class: "json" }),
    input: el("pre", { id: "input", class: "json" }),
    output: el("pre", { id: "output", class: "json" }),
    error: el("pre", { id: "error", class: "json" }),
    timeline: el("ol", { id: "timeline", class: "timeline" }),
  };
  root.append(
    el("h1", {}, "Execution ", el("code", { class: "execution-id", text: view.id }), " ", ui.status, " ", ui.chain, " ", ui.asOf),
    ui.meta,
    ui.actions,
    el("section", { id: "travel", class: "travel" }, el("strong", { text: "Time travel " }), ui.prev, ui.slider, ui.next, ui.liveButton, ui.travelAt),
    el("div", { class: "columns" },
      el("section", { class: "graph-column" }, el("h2", { text: "Graph" }), ui.graphBox),
      el("section", { class: "state-column" },
        el("h2", { text: "Current steps" }), ui.current,
        el("h2", { text: "Failed steps" }), ui.failed,
        el("h2", { text: "Variables" }), ui.variables,
        el("h2", { text: "Input" }), ui.input,
        el("h2", { text: "Output" }), ui.output,
        el("h2", { text: "Error" }), ui.error)),
    el("section", {}, el("h2", { text: "Events" }), ui.timeline));
  return ui;
}

function renderHeader(x) {
  const v = x.shown;
  x.ui.status.replaceChildren(badge(v.status));
  x.ui.asOf.textContent = x.at === null ? "" : `as of event ${x.at}`;
  const live = x.live;
  const item = (term, ...value) => [el("dt", { text: term }), el("dd", {}, ...value)];
  x.ui.meta.replaceChildren(
    ...item("Workflow", el("a", { href: `#/workflows/${enc(live.workflow)}`, text: live.workflow })),
    ...item("Version", el("a", { href: `#/workflows/${enc(live.workflow)}/${enc(live.version)}`, title: live.version, text: live.version.slice(0, 12) })),
    ...item("Started", timeEl(live.startTime)),
    ...item("Ended", timeEl(live.endTime)),
    ...item("Duration", formatMs(live.metrics && live.metrics.duration)),
    ...item("Steps", stepsSummary(live.metrics)),
    ...(live.parentId ? item("Parent", el("a", { href: `#/executions/${enc(live.parentId)}`, text: live.parentId })) : []),
    ...(live.idempotencyKey ? item("Idempotency key", el("code", { text: live.idempotencyKey })) : []));
}

function stepsSummary(m) {
  if (!m) return "—";
  return `${m.completedSteps} completed, ${m.taskCount} tasks, ${m.errorCount} errors, ${m.retryCount} retries`;
}

async function loadVerification(x) {
  try {
    const answer = await api(`/v1/executions/${enc(x.id)}/verify`, { quiet: true });
    if (!x.page.alive) return;
    x.ui.chain.className = answer.verified ? "chain verified" : "chain broken";
    x.ui.chain.textContent = answer.verified ? "chain verified" : `chain broken: ${answer.problem || "unknown problem"}`;
    x.ui.chain.title = `${answer.events} events checked`;
  } catch (e) {
    x.ui.chain.className = "chain unknown";
    x.ui.chain.textContent = "chain not checked";
    x.ui.chain.title = e.message;
  }
}

/** Every event so far, page by page. */
async function loadHistory(x) {
  for (;;) {
    const answer = await api(`/v1/executions/${enc(x.id)}/events?after=${x.lastSeq}&limit=1000`);
    if (!x.page.alive) return;
    const events = answer.events || [];
    for (const event of events) addEvent(x, event);
    if (events.length < 1000) return;
  }
}

/**
 * Follows the execution's stream while it has not ended. The server ends
 * the stream after the terminal event; a redrive (afterCommand) follows
 * again.
 */
function followExecution(x) {
  if (x.stream || ENDED.has(x.live.status)) return;
  const stream = x.page.stream(`/v1/executions/${enc(x.id)}/events/stream`, {
    onEvent({ data }) {
      if (!data || typeof data.seq !== "number" || data.seq <= x.lastSeq) return;
      addEvent(x, data);
      if (TERMINAL_EVENTS.has(data.type)) {
        stream.close();
        if (x.stream === stream) x.stream = null;
      }
      x.refreshLive(); // in time travel, it updates the actions only
    },
    onEnd() {
      if (x.stream === stream) x.stream = null;
    },
  }, x.lastSeq);
  x.stream = stream;
}

function addEvent(x, event) {
  if (event.seq <= x.lastSeq) return;
  x.events.push(event);
  x.lastSeq = event.seq;
  x.ui.timeline.append(timelineItem(x, event));
  updateTravelControls(x);
}

function timelineItem(x, event) {
  const details = el("pre", { class: "json", hidden: true, text: formatJson(event) });
  const head = el("button", { type: "button", class: "event-head", "aria-expanded": "false" },
    el("span", { class: "seq", text: `#${event.seq}` }),
    el("span", { class: `type type-${event.type}`, text: event.type }),
    timeEl(event.at),
    summaryOf(event));
  head.addEventListener("click", () => {
    details.hidden = !details.hidden;
    head.setAttribute("aria-expanded", String(!details.hidden));
  });
  const here = el("button", { type: "button", class: "travel-here quiet", title: "Show the execution as it stood after this event", text: "travel here" });
  here.addEventListener("click", () => travelTo(x, event.seq));
  return el("li", { "data-seq": event.seq, "data-type": event.type }, el("div", { class: "event-row" }, head, here), details);
}

/** A few words about an event (the step, who, why). */
function summaryOf(event) {
  const d = event.data || {};
  const parts = [];
  if (d.step) parts.push(d.step);
  if (d.name) parts.push(d.name);
  if (d.by) parts.push(`by ${d.by}`);
  if (d.reason) parts.push(`“${typeof d.reason === "string" ? d.reason : JSON.stringify(d.reason)}”`);
  if (d.error && d.error.message) parts.push(d.error.message);
  return parts.length ? el("span", { class: "summary", text: parts.join(" · ") }) : null;
}

function updateTravelControls(x) {
  const max = Math.max(1, x.lastSeq);
  const at = x.at ?? x.lastSeq;
  x.ui.slider.max = String(max);
  x.ui.slider.value = String(Math.max(1, at));
  x.ui.travelAt.textContent = `event ${at} of ${x.lastSeq}${x.at === null ? " (live)" : ""}`;
  x.ui.prev.disabled = at <= 1;
  x.ui.next.disabled = at >= x.lastSeq;
  x.ui.liveButton.disabled = x.at === null;
  x.ui.liveButton.classList.toggle("active", x.at === null);
}

function markTimeline(x) {
  for (const item of x.ui.timeline.children) {
    const seq = Number(item.dataset.seq);
    item.classList.toggle("future", x.at !== null && seq > x.at);
    item.classList.toggle("at", x.at !== null && seq === x.at);
  }
}

function travelTo(x, seq) {
  if (!Number.isFinite(seq) || x.lastSeq === 0) return;
  seq = Math.max(1, Math.min(seq, x.lastSeq));
  x.at = seq;
  updateTravelControls(x);
  markTimeline(x);
  x.travel(seq);
}

async function showTravel(x, seq) {
  const answer = await api(`/v1/executions/${enc(x.id)}/replay?until=${seq}`);
  if (!x.page.alive || x.at !== seq) return; // moved on meanwhile
  x.shown = answer.execution;
  renderHeader(x);
  renderPanes(x, answer.execution, answer.steps);
}

function goLive(x) {
  x.at = null;
  updateTravelControls(x);
  markTimeline(x);
  x.refreshLive();
}

/** The execution as it stands now: its view and its steps' states. */
async function refreshLive(x) {
  const [view, replay] = await Promise.all([
    api(`/v1/executions/${enc(x.id)}`),
    // In time travel only the actions follow the present: no need for its steps.
    x.at === null ? api(`/v1/executions/${enc(x.id)}/replay`, { quiet: true }).catch(() => null) : null,
  ]);
  if (!x.page.alive) return;
  x.live = view;
  if (view.lastSeq > x.lastSeq) await loadHistory(x); // a stream that fell behind
  renderActions(x);
  if (x.at !== null) return;
  x.shown = view;
  renderHeader(x);
  renderPanes(x, view, replay ? replay.steps : null);
  updateTravelControls(x);
}

function renderPanes(x, view, steps) {
  const show = (pre, value) => {
    pre.textContent = formatJson(value === undefined ? null : value);
    pre.classList.toggle("empty", value === null || value === undefined);
  };
  show(x.ui.variables, view.variables);
  show(x.ui.input, view.input);
  show(x.ui.output, view.output);
  show(x.ui.error, view.error);
  x.ui.current.replaceChildren(currentStepsTable(view.currentSteps || []));
  x.ui.failed.replaceChildren(failedStepsList(view.failedSteps || []));
  if (x.graph && steps) {
    x.graph.setStates(steps, new Set((view.currentSteps || []).map((s) => s.stepId)));
  }
}

function currentStepsTable(steps) {
  if (!steps.length) return el("p", { class: "muted", text: "none" });
  return el("table", { class: "list compact" },
    el("thead", {}, el("tr", {}, el("th", { text: "Step" }), el("th", { text: "Role" }), el("th", { text: "Since" }), el("th", { text: "Waiting for" }))),
    el("tbody", {}, steps.map((s) => el("tr", { "data-step": s.stepId },
      el("td", {}, el("code", { text: s.stepId }), s.thread ? el("span", { class: "muted", text: ` (${s.thread.parallel}/${s.thread.branch})` }) : null),
      el("td", { text: s.role }),
      el("td", {}, timeEl(s.startTime)),
      el("td", {}, waitingText(s.waiting))))));
}

function waitingText(waiting) {
  if (!waiting) return "—";
  const rest = { ...waiting };
  delete rest.for;
  const what = waiting.capability || waiting.name || waiting.event || waiting.workflow || "";
  return el("details", {}, el("summary", { text: `${waiting.for}${what ? ": " + (typeof what === "string" ? what : JSON.stringify(what)) : ""}` }),
    el("pre", { class: "json", text: formatJson(rest) }));
}

/** The failed steps an operator may retry, skip or redrive, with their errors. */
function failedStepsList(steps) {
  if (!steps.length) return el("p", { class: "muted", text: "none" });
  return el("ul", { class: "failed-steps" }, steps.map((s) => {
    const error = s.error || {};
    return el("li", { "data-step": s.step },
      el("details", {},
        el("summary", {}, el("code", { text: s.step }), " ",
          el("span", { class: "problem", text: `${error.type || "error"}: ${error.message || ""}` }),
          error.attempt ? el("span", { class: "muted", text: ` (attempt ${error.attempt})` }) : null),
        el("pre", { class: "json", text: formatJson(s) })));
  }));
}

/** The actions for the live status; kept as they are (a signal being typed) while they fit. */
function renderActions(x, force = false) {
  const view = x.live;
  const key = `${view.status}:${(view.failedSteps || []).length > 0}`;
  if (!force && x.actionsKey === key) return;
  x.actionsKey = key;
  const buttons = commandsFor(view).map((command) =>
    el("button", { type: "button", "data-command": command, class: `command command-${command}`, text: COMMANDS[command].title, onclick: () => runCommand(x, command) }));
  const children = [el("strong", { text: "Actions " }), ...buttons];
  if (!buttons.length) children.push(el("span", { class: "muted", text: ENDED.has(view.status) ? "none: the execution has ended" : "none" }));
  if (view.status === "running" || view.status === "paused") children.push(signalForm(x));
  x.ui.actions.replaceChildren(...children);
}

function signalForm(x) {
  const name = el("input", { id: "signal-name", placeholder: "event name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.:\\/\\-]*", maxlength: 128 });
  const payload = el("textarea", { id: "signal-payload", rows: 1, placeholder: "payload (JSON, optional)" });
  const send = el("button", { id: "signal-send", type: "submit", "data-command": "signal", text: "Send signal" });
  const form = el("form", { id: "signal-form", class: "signal" }, el("span", { text: "Signal " }), name, payload, send);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sendSignal(x, name.value.trim(), payload.value).catch(reportFailure);
  });
  return form;
}

async function sendSignal(x, name, payloadText) {
  const parsed = parseJsonField(payloadText);
  if (parsed.problem) {
    showError(new Error(`The signal's payload is ${parsed.problem}`));
    return;
  }
  const answer = await confirmAction({ title: `Send the signal “${name}”`, text: `To execution ${x.id}.`, okLabel: "Send" });
  if (!answer) return;
  const headers = answer.reason ? { "Retrace-Reason": answer.reason } : {};
  const body = parsed.empty ? undefined : { payload: parsed.value };
  const result = await api(`/v1/executions/${enc(x.id)}/signals/${enc(name)}`, { method: "POST", body, headers });
  x.ui.actions.append(el("p", { class: "notice", text: `Signal ${name}: ${result.outcome}${result.step ? ` (taken by ${result.step})` : ""}` }));
  await afterCommand(x);
}

async function runCommand(x, command) {
  const spec = COMMANDS[command];
  const extra = [];
  let compensate = null;
  let output = null;
  if (spec.compensate) {
    compensate = el("input", { id: "confirm-compensate", type: "checkbox" });
    extra.push(el("label", { class: "check" }, compensate, " Undo its completed steps first (compensate)"));
  }
  if (spec.output) {
    output = el("textarea", { id: "confirm-output", rows: 3, placeholder: "null" });
    extra.push(el("label", { for: "confirm-output", text: "Output standing for the skipped step's result (JSON)" }), output);
  }
  const answer = await confirmAction({
    title: `${spec.title} execution ${shortId(x.id)}?`,
    text: spec.text,
    okLabel: spec.title,
    extra,
    check: () => (output && parseJsonField(output.value).problem ? `The output is ${parseJsonField(output.value).problem}` : null),
  });
  if (!answer) return;
  let body;
  const headers = {};
  if (spec.reasonInBody) {
    body = {};
    if (answer.reason) body.reason = answer.reason;
    if (compensate && compensate.checked) body.compensate = true;
  } else if (answer.reason) {
    headers["Retrace-Reason"] = answer.reason;
  }
  if (output) {
    const parsed = parseJsonField(output.value);
    body = parsed.empty ? {} : { output: parsed.value };
  }
  await api(`/v1/executions/${enc(x.id)}/${command}`, { method: "POST", body, headers });
  await afterCommand(x);
}

/** After a command: back to live, the view again, and the stream if it had ended. */
async function afterCommand(x) {
  if (!x.page.alive) return;
  x.at = null;
  markTimeline(x);
  await refreshLive(x);
  followExecution(x);
  loadVerification(x);
}

/* ---------------------------------------------------------------------
 * 10. Pages: workflows
 * ------------------------------------------------------------------- */

async function workflowsPage(page) {
  const answer = await api("/v1/workflows");
  if (!page.alive) return;
  const rows = (answer.workflows || []).map((w) => el("tr", { "data-name": w.name },
    el("td", {}, el("a", { href: `#/workflows/${enc(w.name)}`, text: w.name })),
    el("td", {}, w.latest ? versionLink(w.name, w.latest) : "—"),
    el("td", {}, (w.versions || []).map((v, i) => [i ? ", " : "", versionLink(w.name, v)])),
    el("td", {}, el("a", { href: `#/executions?workflow=${enc(w.name)}`, text: "executions" }))));
  page.root.append(
    el("h1", {}, "Workflows ", el("a", { href: "#/define", class: "button", text: "Define one" })),
    rows.length
      ? el("table", { id: "workflows", class: "list" },
        el("thead", {}, el("tr", {}, el("th", { text: "Name" }), el("th", { text: "Latest" }), el("th", { text: "Versions (oldest first)" }), el("th", {}))),
        el("tbody", {}, rows))
      : el("p", { class: "muted", text: "No workflow is defined yet." }));
}

function versionLink(name, version) {
  const text = version.label ? `${version.label} (${version.version.slice(0, 8)})` : version.version.slice(0, 12);
  return el("a", { href: `#/workflows/${enc(name)}/${enc(version.version)}`, title: version.version, text });
}

async function workflowPage(page, name) {
  const answer = await api(`/v1/workflows/${enc(name)}`);
  if (!page.alive) return;
  page.root.append(
    el("h1", {}, "Workflow ", el("code", { text: name })),
    el("p", {}, "Versions, oldest first: ", (answer.versions || []).map((v, i) => [i ? ", " : "", versionLink(name, v)]),
      " · ", el("a", { href: `#/executions?workflow=${enc(name)}`, text: "its executions" })),
    el("h2", {}, "Latest version ", versionLink(name, answer.latest)));
  await showVersion(page, answer.latest);
}

async function versionPage(page, name, version) {
  const answer = await api(`/v1/workflows/${enc(name)}/versions/${enc(version)}`);
  if (!page.alive) return;
  page.root.append(
    el("h1", {}, "Workflow ", el("a", { href: `#/workflows/${enc(name)}` }, el("code", { text: name })), answer.label ? ` ${answer.label}` : ""),
    el("p", { class: "muted" }, "Version ", el("code", { text: answer.version })));
  await showVersion(page, answer);
}

/** A version's graph, a form to start it, and its definition. */
async function showVersion(page, version) {
  const graphBox = el("div", { id: "graph-box", class: "graph-box" }, el("p", { class: "muted", text: "Loading the graph…" }));
  page.root.append(el("h2", { text: "Graph" }), graphBox, startForm(version), el("h2", { text: "Definition" }),
    el("pre", { id: "definition", class: "json", text: formatJson(version.definition) }));
  const drawn = await showGraph(graphBox, version.name, version.version);
  if (drawn) drawn.setStates({}, new Set());
}

function startForm(version) {
  const input = el("textarea", { id: "start-input", rows: 3, placeholder: "input (JSON, optional)" });
  const form = el("form", { id: "start-form", class: "start" },
    el("h2", { text: "Start an execution of this version" }), input, el("button", { id: "start", type: "submit", text: "Start" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const parsed = parseJsonField(input.value);
    if (parsed.problem) {
      showError(new Error(`The input is ${parsed.problem}`));
      return;
    }
    const body = { workflow: version.name, version: version.version };
    if (!parsed.empty) body.input = parsed.value;
    try {
      const started = await api("/v1/executions", { method: "POST", body });
      location.hash = `#/executions/${enc(started.id)}`;
    } catch (e) {
      reportFailure(e);
    }
  });
  return form;
}

/* ---------------------------------------------------------------------
 * 11. Page: define a workflow (#/define)
 * ------------------------------------------------------------------- */

const EXAMPLE_DEFINITION = `name: example
steps:
  - id: first
    type: task
    capability: noop
    next: approval
  - id: approval
    type: event
    event: { name: example.approved }
`;

function definitionType(text, chosen) {
  if (chosen !== "auto") return chosen === "yaml" ? "application/yaml" : "application/json";
  return /^\s*[{[]/.test(text) ? "application/json" : "application/yaml";
}

function definePage(page) {
  const text = el("textarea", { id: "define-text", rows: 20, spellcheck: "false", text: EXAMPLE_DEFINITION });
  const format = el("select", { id: "define-format" },
    el("option", { value: "auto", text: "JSON or YAML (by its first character)" }),
    el("option", { value: "json", text: "JSON" }),
    el("option", { value: "yaml", text: "YAML" }));
  const result = el("div", { id: "define-result", "aria-live": "polite" });
  const send = async (path) => {
    result.replaceChildren(el("p", { class: "muted", text: "Sending…" }));
    try {
      const answer = await api(path, { method: "POST", text: text.value, contentType: definitionType(text.value, format.value), quiet: true });
      result.replaceChildren(definedMessage(path, answer));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      result.replaceChildren(problemsList(e));
    }
  };
  const validate = el("button", { id: "validate", type: "button", text: "Validate" });
  const define = el("button", { id: "define", type: "button", text: "Define" });
  validate.addEventListener("click", () => send("/v1/workflows/validate").catch(reportFailure));
  define.addEventListener("click", () => send("/v1/workflows").catch(reportFailure));
  page.root.append(
    el("h1", { text: "Define a workflow" }),
    el("p", { class: "muted" }, "A definition in JSON or YAML (", el("code", { text: "docs/dsl.md" }), "). Validate checks it without storing it."),
    el("div", { class: "define-controls" }, format, validate, define),
    text,
    result);
}

/** What validate or define answered, with the warnings (what it names that does not exist yet). */
function definedMessage(path, answer) {
  const name = `${answer.name} ${answer.version.slice(0, 12)}`;
  const link = el("a", { href: `#/workflows/${enc(answer.name)}/${enc(answer.version)}`, text: name });
  const said = path.endsWith("/validate")
    ? el("p", { class: "ok" }, "Valid: ", el("code", { text: name }), ".")
    : el("p", { class: "ok" }, answer.created ? "Defined: " : "Already defined (the same document): ", link, ".");
  const warnings = answer.warnings || [];
  if (!warnings.length) return said;
  return el("div", {}, said, el("p", { text: "Warnings:" }),
    el("ul", { id: "warnings" }, warnings.map((w) => el("li", {}, el("code", { class: "path", text: w.path || "(the document)" }), " ", w.message))));
}

function problemsList(error) {
  const details = error.details || [];
  return el("div", { class: "problems" },
    el("p", { class: "problem", text: `${error.status} ${error.code}: ${error.message}` }),
    details.length
      ? el("ul", { id: "problems" }, details.map((d) => el("li", {}, el("code", { class: "path", text: d.path || "(the document)" }), " ", d.message)))
      : null);
}

/* ---------------------------------------------------------------------
 * 12. Page: agents and queues (#/agents), refreshed every 3 s
 * ------------------------------------------------------------------- */

function agentsPage(page) {
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

/* ---------------------------------------------------------------------
 * 13. Page: metrics (#/metrics): rates from /v1/metrics every 2 s
 *
 * Counters read from the JSON: executions started (each workflow's
 * totalExecutions), completed and failed (system.executionsByStatus, which
 * only grow but for a redrive), steps completed (each workflow's
 * stepMetrics[].count) and tasks (system.totalTasksProcessed). A rate is
 * the difference between two samples over the time between them.
 * ------------------------------------------------------------------- */

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

function metricsPage(page) {
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

/* ---------------------------------------------------------------------
 * Start
 * ------------------------------------------------------------------- */

function start() {
  setUpTokenForm();
  setUpConfirmDialog();
  $("error-close").addEventListener("click", clearError);
  window.addEventListener("hashchange", route);
  route();
}

start();
