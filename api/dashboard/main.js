/*
 * retrace dashboard: main.js
 *
 * Owns start-up: the module index.html loads (`<script type="module">`,
 * after the vendored libraries). It wires the token form, the
 * confirmation dialog and the error bar's close button, gives the router
 * its page table, and shows the page the hash names. No framework and no
 * build step: each module is a file served flat as /ui/<file> and
 * imported by its relative path; the only libraries are dagre
 * (vendor/dagre.min.js, served as /ui/dagre.min.js; the global `dagre`)
 * and uPlot (vendor/uPlot.iife.min.js and uPlot.min.css, served as
 * /ui/uPlot.iife.min.js and /ui/uPlot.min.css; the global `uPlot`).
 *
 * Modules (pages import helpers, never each other; nothing imports main.js):
 *   dom.js               DOM and formatting helpers
 *   timing.js            pause() and coalesce()
 *   access.js            the access token and the error bar
 *   api.js               api(): every request
 *   stream.js            openStream(): SSE over fetch, with Last-Event-ID reconnects
 *   router.js            pages (Page) and the router
 *   pages.js             the page table: which hash shows which page
 *   confirm.js           the confirmation dialog
 *   graph.js             the workflow graph (dagre → SVG), its nodes keyboard buttons
 *   timeline.js          an execution's events, a window at a time
 *   page-executions.js   #/executions
 *   page-execution.js    #/executions/<id>
 *   page-workflows.js    #/workflows, #/workflows/<name>[/<version>]
 *   page-define.js       #/define
 *   page-agents.js       #/agents
 *   page-metrics.js      #/metrics (charts by uPlot)
 *
 * It must never hold a page's or a helper's code: only start-up.
 */

import { clearError, setUpTokenForm } from "./access.js";
import { setUpConfirmDialog } from "./confirm.js";
import { $ } from "./dom.js";
import { ROUTES } from "./pages.js";
import { route, setRoutes } from "./router.js";

function start() {
  setRoutes(ROUTES);
  setUpTokenForm(route);
  setUpConfirmDialog();
  $("error-close").addEventListener("click", clearError);
  window.addEventListener("hashchange", route);
  route();
}

start();
