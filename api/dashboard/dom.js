/*
 * retrace dashboard: dom.js
 *
 * Owns the DOM and formatting helpers every other module builds with:
 * el() and svgEl() (an element from its attributes and children), $()
 * (an element of index.html by its id), and how times, durations, ratios,
 * JSON, statuses and ids are shown; and parsing a JSON text field.
 *
 * It must never make a request, hold state or know about a page. The
 * server's Content-Security-Policy allows scripts and styles from /ui/
 * only, so the DOM is built with createElement: never innerHTML with
 * data, never inline handlers or style attributes (an `on<event>` given
 * to el() becomes a listener).
 */

export const SVG_NS = "http://www.w3.org/2000/svg";

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
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

/** An SVG element, like el(). */
export function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

export const $ = (id) => document.getElementById(id);
export const enc = encodeURIComponent;

export function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** "2026-01-31 10:00:00" in the browser's time zone. */
export function formatTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A time element: local time shown, the server's RFC 3339 in its title. */
export function timeEl(iso) {
  return el("time", { datetime: iso || undefined, title: iso || undefined, text: formatTime(iso) });
}

export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(ms / 3600000)} h ${Math.round((ms % 3600000) / 60000)} min`;
}

export function formatPercent(ratio) {
  return typeof ratio === "number" ? `${(ratio * 100).toFixed(1)} %` : "—";
}

export function formatJson(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** A table's head row. */
export function tableHead(titles) {
  return el("thead", {}, el("tr", {}, titles.map((title) => el("th", { text: title }))));
}

/** A status as a coloured badge. */
export function badge(status, attrs = {}) {
  return el("span", { ...attrs, class: `badge status-${status}`, text: status });
}

/** An execution id, shortened for tables (the whole id in the title). */
export function shortId(id) {
  return id.length > 13 ? `${id.slice(0, 13)}…` : id;
}

/** Parses a JSON text field: `{value}` or `{problem}`; empty is `{empty}`. */
export function parseJsonField(text) {
  if (text.trim() === "") return { empty: true };
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { problem: `not JSON: ${e.message}` };
  }
}
