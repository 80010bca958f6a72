/*
 * retrace dashboard: page-execution.js
 *
 * Owns the page of one execution, #/executions/<id>: its header and chain
 * badge, graph (a step chosen there is described beside it), current and
 * failed steps, variables, input, output and error, time travel, and the
 * operator actions; the event timeline is timeline.js's.
 *
 * Live by default: the execution's stream appends each event to the
 * timeline and refreshes the view. Time travel (#travel) shows the
 * execution as it stood after event N (GET /replay?until=N) until "live";
 * the state column then says which event it shows (`data-until`). The
 * page reads a window of events, never the whole history, so it opens as
 * fast with 10,000 events as with ten, and calls page.ready() once the
 * graph, the timeline and the state are drawn.
 *
 * It must never import another page, compute a past state itself (the
 * server's /replay does), or send a command the user has not confirmed.
 */

import { reportFailure, showError } from "./access.js";
import { api } from "./api.js";
import { confirmAction } from "./confirm.js";
import { badge, el, enc, formatJson, formatMs, parseJsonField, shortId, timeEl } from "./dom.js";
import { showGraph, stateText } from "./graph.js";
import { createTimeline } from "./timeline.js";
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
    page, id, live: view, shown: view, lastSeq: view.lastSeq || 0, at: null,
    graph: null, stream: null, ui: null, timeline: null,
  };
  x.refreshLive = coalesce(() => refreshLive(x));
  x.travel = coalesce((seq) => showTravel(x, seq));
  x.timeline = createTimeline(page, id, { onTravel: (seq) => travelTo(x, seq) });
  x.timeline.setLast(x.lastSeq);
  x.ui = executionLayout(root, view, x.timeline.element);
  renderHeader(x);
  renderActions(x);
  renderPanes(x, view, null);
  updateTravelControls(x);

  // The graph, the window of events and the steps' states at once.
  const [graph, , replay] = await Promise.all([
    showGraph(x.ui.graphBox, view.workflow, view.version, { withStates: true, onSelect: (step) => showSelected(x, step) }),
    x.timeline.showAround(x.lastSeq),
    api(`/v1/executions/${enc(id)}/replay?until=${x.lastSeq}`, { quiet: true }).catch(() => null),
  ]);
  if (!page.alive) return;
  x.graph = graph;
  if (x.at === null) renderPanes(x, view, replay ? replay.steps : null);
  x.ui.slider.addEventListener("input", () => travelTo(x, Number(x.ui.slider.value)));
  x.ui.prev.addEventListener("click", () => travelTo(x, (x.at ?? x.lastSeq) - 1));
  x.ui.next.addEventListener("click", () => travelTo(x, (x.at ?? x.lastSeq) + 1));
  x.ui.liveButton.addEventListener("click", () => goLive(x));
  // What happened meanwhile comes from the stream (it refreshes the view).
  followExecution(x);
  page.ready();
  loadVerification(x); // reads the whole chain: after the page is drawn
}

function executionLayout(root, view, timeline) {
  const ui = {
    status: el("span", { id: "status" }),
    asOf: el("span", { id: "as-of", class: "muted" }),
    chain: el("span", { id: "chain", class: "chain pending", text: "checking the chain…" }),
    meta: el("dl", { class: "meta" }),
    actions: el("section", { id: "actions", class: "actions", "aria-label": "Actions" }),
    slider: el("input", { id: "travel-slider", type: "range", min: 1, max: 1, value: 1, step: 1, "aria-label": "Time travel: the event to show the execution after" }),
    prev: el("button", { id: "travel-prev", type: "button", title: "The event before", "aria-label": "The event before", text: "◀" }),
    next: el("button", { id: "travel-next", type: "button", title: "The event after", "aria-label": "The event after", text: "▶" }),
    liveButton: el("button", { id: "travel-live", type: "button", text: "Live" }),
    travelAt: el("span", { id: "travel-at", text: "", "aria-live": "polite" }),
    graphBox: el("div", { id: "graph-box", class: "graph-box" }, el("p", { class: "muted", text: "Loading the graph…" })),
    selected: el("div", { id: "step-details", class: "step-details", "aria-live": "polite" },
      el("p", { class: "muted", text: "Choose a step in the graph (click, or Tab to it and press Enter) to see where it stands." })),
    state: el("section", { id: "state", class: "state-column" }),
    current: el("div", { id: "current-steps" }),
    failed: el("div", { id: "failed-steps" }),
    variables: el("pre", { id: "variables", class: "json" }),
    input: el("pre", { id: "input", class: "json" }),
    output: el("pre", { id: "output", class: "json" }),
    error: el("pre", { id: "error", class: "json" }),
  };
  ui.state.append(
    el("h2", { text: "Current steps" }), ui.current,
    el("h2", { text: "Failed steps" }), ui.failed,
    el("h2", { text: "Variables" }), ui.variables,
    el("h2", { text: "Input" }), ui.input,
    el("h2", { text: "Output" }), ui.output,
    el("h2", { text: "Error" }), ui.error);
  root.append(
    el("h1", {}, "Execution ", el("code", { class: "execution-id", text: view.id }), " ", ui.status, " ", ui.chain, " ", ui.asOf),
    ui.meta,
    ui.actions,
    el("section", { id: "travel", class: "travel", "aria-label": "Time travel" }, el("strong", { text: "Time travel " }), ui.prev, ui.slider, ui.next, ui.liveButton, ui.travelAt),
    el("div", { class: "columns" },
      el("section", { class: "graph-column" }, el("h2", { text: "Graph" }), ui.graphBox, ui.selected),
      ui.state),
    timeline);
  return ui;
}

function renderHeader(x) {
  const v = x.shown;
  x.ui.status.replaceChildren(badge(v.status));
  x.ui.asOf.textContent = x.at === null ? "" : `as of event ${x.at}`;
  const live = x.live;
  const item = (term, ...value) => [el("div", {}, el("dt", { text: term }), el("dd", {}, ...value))];
  x.ui.meta.replaceChildren(
    ...item("Workflow", el("a", { href: `#/workflows/${enc(live.workflow)}`, text: live.workflow })),
    ...item("Version", el("a", { href: `#/workflows/${enc(live.workflow)}/${enc(live.version)}`, title: live.version, text: live.version.slice(0, 12) })),
    ...item("Started", timeEl(live.startTime)),
    ...item("Ended", timeEl(live.endTime)),
    ...item("Duration", formatMs(live.metrics && live.metrics.duration)),
    ...item("Steps", stepsSummary(live.metrics)),
    ...item("Events", String(live.lastSeq)),
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
    if (!x.page.alive) return;
    x.ui.chain.className = "chain unknown";
    x.ui.chain.textContent = "chain not checked";
    x.ui.chain.title = e.message;
  }
}

/**
 * Follows the execution's stream while it has not ended, from the last
 * event the page knows. The server ends the stream after the terminal
 * event; a redrive (afterCommand) follows again.
 */
function followExecution(x) {
  if (x.stream || ENDED.has(x.live.status)) return;
  const stream = x.page.stream(`/v1/executions/${enc(x.id)}/events/stream`, {
    onEvent({ data }) {
      if (!data || typeof data.seq !== "number") return;
      x.timeline.append(data);
      if (data.seq > x.lastSeq) {
        x.lastSeq = data.seq;
        updateTravelControls(x);
      }
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

function updateTravelControls(x) {
  const max = Math.max(1, x.lastSeq);
  const at = x.at ?? x.lastSeq;
  x.ui.slider.max = String(max);
  x.ui.slider.value = String(Math.max(1, at));
  x.ui.slider.setAttribute("aria-valuetext", `event ${at} of ${x.lastSeq}`);
  x.ui.travelAt.textContent = `event ${at} of ${x.lastSeq}${x.at === null ? " (live)" : ""}`;
  x.ui.prev.disabled = at <= 1;
  x.ui.next.disabled = at >= x.lastSeq;
  x.ui.liveButton.disabled = x.at === null;
  x.ui.liveButton.classList.toggle("active", x.at === null);
  x.ui.liveButton.setAttribute("aria-pressed", String(x.at === null));
}

function travelTo(x, seq) {
  if (!Number.isFinite(seq) || x.lastSeq === 0) return;
  seq = Math.max(1, Math.min(seq, x.lastSeq));
  x.at = seq;
  updateTravelControls(x);
  x.timeline.mark(seq);
  x.travel(seq);
}

async function showTravel(x, seq) {
  const [answer] = await Promise.all([
    api(`/v1/executions/${enc(x.id)}/replay?until=${seq}`),
    x.timeline.reveal(seq),
  ]);
  if (!x.page.alive || x.at !== seq) return; // moved on meanwhile
  x.shown = answer.execution;
  renderHeader(x);
  renderPanes(x, answer.execution, answer.steps, answer.until);
}

function goLive(x) {
  x.at = null;
  updateTravelControls(x);
  x.timeline.mark(null);
  x.timeline.follow().catch(reportFailure);
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
  if (view.lastSeq > x.lastSeq) x.lastSeq = view.lastSeq; // a stream that fell behind
  x.timeline.setLast(x.lastSeq);
  renderActions(x);
  updateTravelControls(x);
  if (x.at !== null) return;
  x.shown = view;
  renderHeader(x);
  renderPanes(x, view, replay ? replay.steps : null);
}

/**
 * The state column: `view` as the live view or a replay answer shows it;
 * `until` the event it stands after in time travel (`data-until`).
 */
function renderPanes(x, view, steps, until = null) {
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
  if (until === null) x.ui.state.removeAttribute("data-until");
  else x.ui.state.dataset.until = String(until);
  if (x.graph && steps) {
    x.graph.setStates(steps, new Set((view.currentSteps || []).map((s) => s.stepId)));
  }
}

/** What the graph's chosen step is doing in the execution shown. */
function showSelected(x, step) {
  const current = (x.shown.currentSteps || []).filter((s) => s.stepId === step.id);
  const failed = (x.shown.failedSteps || []).filter((s) => s.step === step.id);
  x.ui.selected.dataset.step = step.id;
  x.ui.selected.replaceChildren(
    el("h3", {}, "Step ", el("code", { text: step.id }), ` (${step.kind})`),
    el("p", { class: "step-state" }, el("span", { class: `state-word state-${step.state}`, text: stateText(step.state) }),
      step.runs ? `, entered ${step.runs} ${step.runs === 1 ? "time" : "times"}` : "",
      x.at === null ? "" : ` (as of event ${x.at})`),
    current.length ? el("pre", { class: "json", text: formatJson(current) }) : null,
    failed.length ? el("pre", { class: "json", text: formatJson(failed) }) : null);
}

function currentStepsTable(steps) {
  if (!steps.length) return el("p", { class: "muted", text: "none" });
  return el("table", { class: "list compact" },
    el("thead", {}, el("tr", {}, el("th", { text: "Step" }), el("th", { text: "Role" }), el("th", { text: "Since" }), el("th", { text: "Waiting for" }))),
    el("tbody", {}, steps.map((s) => el("tr", { "data-step": s.stepId, "data-activation": s.activation },
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
    el("button", { type: "button", "data-command": command, class: `command command-${command}`, text: COMMANDS[command].title, onclick: () => runCommand(x, command).catch(reportFailure) }));
  const children = [el("strong", { text: "Actions " }), ...buttons];
  if (!buttons.length) children.push(el("span", { class: "muted", text: ENDED.has(view.status) ? "none: the execution has ended" : "none" }));
  if (view.status === "running" || view.status === "paused") children.push(signalForm(x));
  x.ui.actions.replaceChildren(...children);
}

function signalForm(x) {
  const name = el("input", { id: "signal-name", placeholder: "event name", "aria-label": "Signal name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.:\\/\\-]*", maxlength: 128 });
  const payload = el("textarea", { id: "signal-payload", rows: 1, placeholder: "payload (JSON, optional)", "aria-label": "Signal payload (JSON, optional)" });
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
  x.timeline.mark(null);
  await Promise.all([refreshLive(x), x.timeline.follow()]);
  followExecution(x);
  loadVerification(x);
}
