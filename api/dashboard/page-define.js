/*
 * retrace dashboard: page-define.js
 *
 * Owns the define page, #/define: a JSON or YAML definition validated
 * (POST /v1/workflows/validate) or defined (POST /v1/workflows), and what
 * the server answered: the warnings, or every problem with where it is.
 *
 * It must never import another page, nor parse or check a definition
 * itself: the server does.
 */

import { ApiError, reportFailure } from "./access.js";
import { api } from "./api.js";
import { el, enc } from "./dom.js";

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

export function definePage(page) {
  const text = el("textarea", { id: "define-text", rows: 20, spellcheck: "false", text: EXAMPLE_DEFINITION });
  const format = el("select", { id: "define-format", "aria-label": "The definition's format" },
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
    el("label", { for: "define-text", text: "Definition" }),
    text,
    result);
  page.ready();
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
