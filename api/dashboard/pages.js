/*
 * retrace dashboard: pages.js
 *
 * Owns the page table: which hash shows which page, and which navigation
 * link it highlights. main.js gives it to the router.
 *
 * It must never hold a page's code (each page is its own module), and
 * neither a page nor the router may import it (an import cycle).
 */

import { agentsPage } from "./page-agents.js";
import { definePage } from "./page-define.js";
import { executionPage } from "./page-execution.js";
import { executionsPage } from "./page-executions.js";
import { metricsPage } from "./page-metrics.js";
import { versionPage, workflowPage, workflowsPage } from "./page-workflows.js";

export const ROUTES = [
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
