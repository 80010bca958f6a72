/*
 * retrace dashboard: page-executions.js
 *
 * Owns the executions page, #/executions?workflow=&status=&from=&to=&id=&order=:
 * the filter form, the table read page by page, and the table kept live
 * from the engine-wide stream, which starts after the position its first
 * page was read at (list, then watch).
 *
 * Built for many executions: the server filters and pages (PAGE_SIZE
 * rows a page, "More" for the next); the table never holds more rows
 * than the pages read (a newer execution pushes the last row off, and the
 * cursor moves back with it); a started execution's row is drawn from its
 * event alone, and a burst of changes (more than BURST) reads the rows
 * shown again in one request instead of one request per execution.
 *
 * It must never import another page, nor call fetch itself (api.js and
 * page.stream() do).
 */

import { reportFailure } from "./access.js";
import { api } from "./api.js";
import { $, badge, el, enc, pad, timeEl } from "./dom.js";
import { route } from "./router.js";
import { coalesce } from "./timing.js";

const STATUSES = ["running", "paused", "compensating", "compensation_failed", "completed", "failed", "compensated", "cancelled", "terminated"];
const PAGE_SIZE = 50;
/** More changes waiting than this: read the rows shown again, in one request. */
const BURST = 20;

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

function listPath(filters, cursor, limit = PAGE_SIZE) {
  const q = new URLSearchParams();
  if (filters.workflow) q.set("workflow", filters.workflow);
  if (filters.status) q.set("status", filters.status);
  if (filters.id) q.set("idPrefix", filters.id);
  if (filters.from) q.set("startedFrom", filters.from);
  if (filters.to) q.set("startedTo", filters.to);
  if (filters.order === "newest") q.set("order", "newest");
  q.set("limit", String(limit));
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

export async function executionsPage(page, query) {
  const filters = filtersOf(query);
  const root = page.root;
  root.append(el("h1", { text: "Executions" }));
  const workflows = await api("/v1/workflows", { quiet: true }).catch(() => ({ workflows: [] }));
  if (!page.alive) return;
  root.append(filterForm(filters, (workflows.workflows || []).map((w) => w.name)));

  const body = el("tbody");
  const table = el("table", { id: "executions", class: "list" },
    el("caption", { class: "visually-hidden", text: "Executions" }),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Id" }), el("th", { scope: "col", text: "Workflow" }), el("th", { scope: "col", text: "Status" }), el("th", { scope: "col", text: "Started" }))),
    body);
  const empty = el("p", { id: "executions-empty", class: "muted", text: "No executions match.", hidden: true });
  const more = el("button", { id: "more", type: "button", hidden: true, text: "More" });
  root.append(table, empty, more);

  const list = {
    rows: new Map(), cursor: null, position: null, capacity: 0, newest: filters.order === "newest", body, more,
    refreshEmpty() {
      empty.hidden = list.rows.size > 0;
    },
  };

  const loadPage = async () => {
    const answer = await api(listPath(filters, list.cursor));
    if (!page.alive) return;
    list.capacity += PAGE_SIZE;
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
    list.refreshEmpty();
  };
  more.addEventListener("click", () => loadPage().catch(reportFailure));

  /** The rows shown, read again in one request (after a burst of changes). */
  const reload = async () => {
    const answer = await api(listPath(filters, null, Math.min(list.capacity, 500)), { quiet: true });
    if (!page.alive) return;
    list.rows.clear();
    body.replaceChildren(...answer.executions.map((execution) => {
      const row = executionRow(execution);
      list.rows.set(execution.id, row);
      return row;
    }));
    list.cursor = answer.nextCursor;
    more.hidden = !list.cursor;
    list.refreshEmpty();
  };

  await loadPage();
  if (!page.alive) return;
  followExecutions(page, filters, list, reload);
  page.ready();
}

/**
 * Keeps the table live from the global stream. A started execution's row
 * comes from its event; on another event that changes a shown execution's
 * status (or, under a status filter, may bring one in), that execution is
 * read again and its row upserted (or dropped); more than BURST of those
 * waiting at once read the rows shown again instead. The stream starts
 * after the position the list was read at, so it shows exactly the
 * changes since (list, then watch).
 */
function followExecutions(page, filters, list, reload) {
  const queue = new Set();
  const refetch = coalesce(async () => {
    while (queue.size && page.alive) {
      if (queue.size > BURST) {
        queue.clear();
        await reload();
        continue;
      }
      const id = queue.values().next().value;
      queue.delete(id);
      let execution;
      try {
        execution = await api(`/v1/executions/${enc(id)}`, { quiet: true });
      } catch {
        continue;
      }
      if (page.alive) upsertRow(execution, filters, list);
      list.refreshEmpty();
    }
  });
  const q = new URLSearchParams({ type: ROW_EVENTS.join(",") });
  if (filters.workflow) q.set("workflow", filters.workflow);
  page.stream(`/v1/events/stream?${q}`, {
    onEvent({ data }) {
      if (!data || !data.executionId) return;
      const shown = list.rows.has(data.executionId);
      if (data.type === "execution_started" && !shown && data.workflow) {
        // Everything a new row shows is in its event: no request.
        upsertRow({ id: data.executionId, workflow: data.workflow, status: "running", startTime: data.at }, filters, list);
        list.refreshEmpty();
        return;
      }
      // An execution not shown can only come in by starting, or, under a
      // status filter, by reaching that status (the other filters hold
      // for good or never).
      if (!shown && !filters.status) return;
      if (!shown && !matchesIdPrefix(data.executionId, filters.id)) return;
      queue.add(data.executionId);
      refetch();
    },
  }, list.position);
}

function upsertRow(execution, filters, list) {
  const { body, rows } = list;
  const existing = rows.get(execution.id);
  if (!matchesFilters(execution, filters)) {
    if (existing) {
      existing.remove();
      rows.delete(execution.id);
    }
    return;
  }
  if (existing) {
    fillRow(existing, execution);
    return;
  }
  // Rows are in id order (ids are time-ordered): find its place.
  const before = [...body.children].find((row) => (list.newest ? row.dataset.id < execution.id : row.dataset.id > execution.id));
  if (!before && list.cursor) return; // it belongs on a page not loaded yet
  const row = executionRow(execution);
  row.classList.add("fresh");
  body.insertBefore(row, before || null);
  rows.set(execution.id, row);
  // No more rows than the pages read: the last one goes back to the next page.
  while (rows.size > list.capacity && body.lastElementChild) {
    const last = body.lastElementChild;
    last.remove();
    rows.delete(last.dataset.id);
    list.cursor = body.lastElementChild ? body.lastElementChild.dataset.id : null;
    list.more.hidden = !list.cursor;
  }
}
