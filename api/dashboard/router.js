/*
 * retrace dashboard: router.js
 *
 * Owns hash routing: route() leaves the page shown, shows the one the
 * location's hash names and highlights its navigation link. Each visit to
 * a route is a `Page`: its own root element under <main>, `alive` until
 * the route changes, and cleanups (streams to close, timers to stop) run
 * when it is left. Asynchronous work checks `page.alive` before it draws.
 * A page calls `ready()` once its first view is drawn: its root then says
 * so (`data-ready`; `data-ready-ms`, the milliseconds since the route was
 * shown; `data-ready-at`, since the document's navigation began), which
 * the browser test waits for and measures.
 *
 * It must never import a page: main.js gives it the page table (pages.js)
 * through setRoutes(), so that a page may import route() without an
 * import cycle.
 */

import { clearError, reportFailure } from "./access.js";
import { $, el } from "./dom.js";
import { openStream } from "./stream.js";

class Page {
  constructor(root) {
    this.root = root;
    this.alive = true;
    this.cleanups = [];
    this.shownAt = performance.now();
  }

  /** Marks the first view drawn (`data-ready`, `data-ready-ms`, `data-ready-at`). */
  ready() {
    if (!this.alive || this.root.hasAttribute("data-ready")) return;
    const now = performance.now();
    this.root.dataset.readyMs = String(Math.round(now - this.shownAt));
    this.root.dataset.readyAt = String(Math.round(now));
    this.root.setAttribute("data-ready", "");
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

/** The page table (pages.js), given once by main.js: the router imports no page. */
let routes = [];

/** Sets the page table route() matches the location's hash against. */
export function setRoutes(table) {
  routes = table;
}

let currentPage = null;

export function route() {
  if (currentPage) currentPage.leave();
  clearError();
  const hash = location.hash && location.hash !== "#" && location.hash !== "#/" ? location.hash : "#/executions";
  const root = el("div", { class: "page" });
  $("main").replaceChildren(root);
  const page = new Page(root);
  currentPage = page;
  for (const { pattern, nav, show } of routes) {
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
