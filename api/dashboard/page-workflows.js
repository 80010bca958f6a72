/*
 * retrace dashboard: page-workflows.js
 *
 * Owns the workflow pages: the list (#/workflows), one workflow
 * (#/workflows/<name>: its versions, and its latest shown) and one version
 * (#/workflows/<name>/<version>): its graph (a step chosen there shows its
 * definition), a form to start an execution of it, and its definition.
 *
 * It must never import another page (it links to them), nor call fetch
 * itself (api.js does).
 */

import { reportFailure, showError } from "./access.js";
import { api } from "./api.js";
import { el, enc, formatJson, parseJsonField } from "./dom.js";
import { showGraph } from "./graph.js";

export async function workflowsPage(page) {
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

export async function workflowPage(page, name) {
  const answer = await api(`/v1/workflows/${enc(name)}`);
  if (!page.alive) return;
  page.root.append(
    el("h1", {}, "Workflow ", el("code", { text: name })),
    el("p", {}, "Versions, oldest first: ", (answer.versions || []).map((v, i) => [i ? ", " : "", versionLink(name, v)]),
      " · ", el("a", { href: `#/executions?workflow=${enc(name)}`, text: "its executions" })),
    el("h2", {}, "Latest version ", versionLink(name, answer.latest)));
  await showVersion(page, answer.latest);
}

export async function versionPage(page, name, version) {
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
  const details = el("div", { id: "step-details", class: "step-details", "aria-live": "polite" },
    el("p", { class: "muted", text: "Choose a step in the graph (click, or Tab to it and press Enter) to see its definition." }));
  page.root.append(el("h2", { text: "Graph" }), graphBox, details, startForm(version), el("h2", { text: "Definition" }),
    el("pre", { id: "definition", class: "json", text: formatJson(version.definition) }));
  const onSelect = (step) => {
    details.dataset.step = step.id;
    details.replaceChildren(el("h3", {}, "Step ", el("code", { text: step.id }), ` (${step.kind})`),
      el("pre", { class: "json", text: formatJson(stepDefinition(version.definition, step.id)) }));
  };
  await showGraph(graphBox, version.name, version.version, { onSelect });
  page.ready();
}

/** The object with `"id": stepId` in a definition (a step, in a branch or not), or null. */
function stepDefinition(value, stepId) {
  if (!value || typeof value !== "object") return null;
  if (!Array.isArray(value) && value.id === stepId && typeof value.type === "string") return value;
  for (const inner of Object.values(value)) {
    const found = stepDefinition(inner, stepId);
    if (found) return found;
  }
  return null;
}

function startForm(version) {
  const input = el("textarea", { id: "start-input", rows: 3, placeholder: "{}" });
  const form = el("form", { id: "start-form", class: "start" },
    el("h2", { text: "Start an execution of this version" }),
    el("label", { for: "start-input", text: "Input (JSON, optional)" }),
    input, el("button", { id: "start", type: "submit", text: "Start" }));
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
