/*
 * retrace dashboard: page-execution.js
 *
 * Owns the page of one execution, #/executions/<id>: its header and chain
 * badge, graph, current and failed steps, variables, input, output and
 * error, the event timeline, time travel, and the operator actions.
 *
 * Live by default: the execution's stream appends each event to the
 * timeline and refreshes the view. Time travel (#travel) shows the
 * execution as it stood after event N (GET /replay?until=N) until "live".
 *
 * It must never import another page, compute a past state itself (the
 * server's /replay does), or send a command the user has not confirmed.
 */

import { reportFailure, showError } from "./access.js";
import { api } from "./api.js";
import { confirmAction } from "./confirm.js";
import { badge, el, enc, formatJson, formatMs, parseJsonField, shortId, timeEl } from "./dom.js";
import { showGraph } from "./graph.js";
import { coalesce } from "./timing.js";

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

export async function executionPage(page, id) {
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
