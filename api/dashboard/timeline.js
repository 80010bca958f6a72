/*
 * retrace dashboard: timeline.js
 *
 * Owns one execution's event timeline (<ol id="timeline">) as a window
 * over its history: the events within WINDOW of a position, read with
 * GET /v1/executions/{id}/events?after=&limit= (one request), never the
 * whole history, so an execution of 10,000 events opens as fast as one of
 * ten. Buttons move the window (first, earlier, later, latest); while the
 * window reaches the execution's last event, live events are appended (the
 * oldest dropped past MAX_SHOWN). Each event's JSON shows on its button;
 * "travel here" hands the event to the caller's onTravel; the events
 * after the time-travel position are marked (mark()).
 *
 * It must never fold an execution's state (the caller shows /replay's),
 * read the whole history, or keep more than MAX_SHOWN events in the page.
 */

import { api } from "./api.js";
import { el, enc, formatJson, timeEl } from "./dom.js";
import { coalesce } from "./timing.js";

/** Events shown before and after the time-travel position. */
export const WINDOW = 100;
/** Events one window read holds. */
const SPAN = 2 * WINDOW + 1;
/** The most events kept while live events are appended. */
const MAX_SHOWN = SPAN + WINDOW;

/**
 * The timeline of execution `id` on `page`. Returns `{element,
 * setLast(seq), showAround(seq), reveal(seq), follow(), append(event),
 * mark(at)}`; every loading method resolves once the window is drawn.
 */
export function createTimeline(page, id, { onTravel }) {
  const list = el("ol", { id: "timeline", class: "timeline", "aria-label": "Events" });
  const range = el("span", { id: "timeline-range", class: "muted", "aria-live": "polite" });
  const button = (buttonId, label, text) => el("button", { id: buttonId, type: "button", class: "quiet", "aria-label": label, title: label, text });
  const first = button("timeline-first", "The first events", "⏮ first");
  const earlier = button("timeline-earlier", "Earlier events", "◀ earlier");
  const later = button("timeline-later", "Later events", "later ▶");
  const latest = button("timeline-latest", "The latest events", "latest ⏭");
  const element = el("section", { id: "events", class: "events" },
    el("div", { class: "events-head" }, el("h2", { text: "Events" }), first, earlier, range, later, latest),
    list);

  // The window holds the events after `after` through `to`; `last` is the
  // execution's last event as far as the page knows; `atEnd` says the
  // window reached it when read (so live events belong at its end).
  const t = { after: 0, to: 0, last: 0, at: null, atEnd: false, generation: 0 };

  async function read(after, limit) {
    const answer = await api(`/v1/executions/${enc(id)}/events?after=${after}&limit=${limit}`);
    return answer.events || [];
  }

  /** Shows the events after `after` (up to SPAN of them) instead of the window. */
  async function load(after) {
    const generation = ++t.generation;
    const events = await read(after, SPAN);
    if (!page.alive || generation !== t.generation) return;
    list.replaceChildren(...events.map(item));
    t.after = after;
    t.to = events.length ? events[events.length - 1].seq : after;
    t.last = Math.max(t.last, t.to);
    // At the end when it holds the last event known (a server whose page
    // limit is below SPAN answers fewer events, not the end).
    t.atEnd = t.to >= t.last;
    mark(t.at);
    controls();
  }

  /** Appends what happened after the window's end, while it is at the end. */
  const catchUp = coalesce(async () => {
    while (page.alive && t.atEnd && t.to < t.last) {
      const generation = t.generation;
      const events = await read(t.to, SPAN);
      if (!page.alive || generation !== t.generation) return;
      if (!events.length) return;
      for (const event of events) add(event);
    }
  });

  function add(event) {
    if (event.seq !== t.to + 1) return;
    list.append(item(event));
    t.to = event.seq;
    t.last = Math.max(t.last, t.to);
    while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
    t.after = list.firstElementChild ? Number(list.firstElementChild.dataset.seq) - 1 : t.to;
    mark(t.at);
    controls();
  }

  function item(event) {
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
    const here = el("button", {
      type: "button", class: "travel-here quiet", text: "travel here",
      "aria-label": `travel here: after event ${event.seq}`, title: "Show the execution as it stood after this event",
    });
    here.addEventListener("click", () => onTravel(event.seq));
    return el("li", { "data-seq": event.seq, "data-type": event.type }, el("div", { class: "event-row" }, head, here), details);
  }

  function controls() {
    range.textContent = t.to > t.after ? `events ${t.after + 1}–${t.to} of ${t.last}` : `no events of ${t.last}`;
    first.disabled = earlier.disabled = t.after <= 0;
    later.disabled = latest.disabled = t.atEnd && t.to >= t.last;
    element.dataset.after = String(t.after);
    element.dataset.to = String(t.to);
  }

  /** Marks the events after `at` (null: live, none marked). */
  function mark(at) {
    t.at = at;
    for (const li of list.children) {
      const seq = Number(li.dataset.seq);
      li.classList.toggle("future", at !== null && seq > at);
      li.classList.toggle("at", at !== null && seq === at);
    }
  }

  /** The window centred on `seq`. */
  function showAround(seq) {
    return load(Math.max(0, seq - WINDOW - 1));
  }

  first.addEventListener("click", () => load(0));
  earlier.addEventListener("click", () => load(Math.max(0, t.after - SPAN)));
  later.addEventListener("click", () => load(t.to));
  latest.addEventListener("click", () => load(Math.max(0, t.last - SPAN)));
  controls();

  return {
    element,
    showAround,
    /** The execution's last event is (at least) `seq`: appended if the window is at the end. */
    setLast(seq) {
      if (seq <= t.last) return;
      t.last = seq;
      controls();
      if (t.atEnd) catchUp();
    },
    /** Moves the window to `seq` unless it shows it already. */
    reveal(seq) {
      if (seq > t.after && seq <= t.to) return Promise.resolve();
      return showAround(seq);
    },
    /** Back to the latest events, for live updates to append to. */
    follow() {
      if (t.atEnd) return Promise.resolve();
      return showAround(t.last);
    },
    /** A live event: appended if the window is at the end. */
    append(event) {
      t.last = Math.max(t.last, event.seq);
      if (t.atEnd && event.seq === t.to + 1) add(event);
      else if (t.atEnd && event.seq > t.to + 1) catchUp();
      else controls();
    },
    mark,
  };
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
