/*
 * retrace dashboard: access.js
 *
 * Owns the access token and the error bar: the token kept in this tab's
 * sessionStorage, the form that asks for it (askForToken() resolves once
 * one is given, for a request refused with 401 to retry), ApiError (a
 * failed request with the server's error body), and showing or clearing
 * what went wrong.
 *
 * It must never make a request (api.js and stream.js do, and call here),
 * keep the token anywhere but sessionStorage, or import the router: what
 * to show again after a token is changed by hand is given to
 * setUpTokenForm().
 */

import { $, el } from "./dom.js";

const TOKEN_KEY = "retrace.token";

export function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** The promise every request refused with 401 waits on while the form shows. */
let tokenWait = null;
let tokenGiven = null;

/** Shows the token form (saying `message`); resolves once a token is given. */
export function askForToken(message) {
  if (!tokenWait) {
    tokenWait = new Promise((resolve) => {
      tokenGiven = resolve;
    });
  }
  showTokenForm(message);
  return tokenWait;
}

function showTokenForm(message) {
  $("token-message").textContent = message || "This server requires an access token.";
  $("token-panel").hidden = false;
  $("token-input").value = "";
  $("token-input").focus();
}

/** Wires the token form; `showAgain()` shows the page again after a token is changed by hand. */
export function setUpTokenForm(showAgain) {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-panel").hidden = true;
    if (tokenGiven) {
      const given = tokenGiven;
      tokenWait = null;
      tokenGiven = null;
      given();
    } else {
      showAgain(); // a token changed by hand: show the page with it
    }
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-input").value = "";
    $("token-message").textContent = "Token forgotten. Give another one, or none if the server needs none.";
  });
  $("token-button").addEventListener("click", () => {
    const panel = $("token-panel");
    if (panel.hidden) showTokenForm(currentToken() ? "Replace the access token this tab sends." : "Give an access token for this tab to send.");
    else if (!tokenWait) panel.hidden = true;
  });
}

/** A failed request, with the server's error body. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

/** The ApiError in a failed response (`{"error": {code, message, details?}}`). */
export async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && body.error;
  if (error && typeof error.message === "string") {
    return new ApiError(response.status, error.code || "error", error.message, error.details);
  }
  return new ApiError(response.status, "http_" + response.status, `${response.status} ${response.statusText}`);
}

export function showError(error) {
  const text = error instanceof ApiError && error.status
    ? `${error.status} ${error.code}: ${error.message}`
    : error.message || String(error);
  $("error-text").textContent = text;
  const details = (error.details || []).map((d) =>
    el("li", {}, d.path ? el("code", { text: d.path }) : null, d.path ? ": " : "", d.message || JSON.stringify(d)));
  $("error-details").replaceChildren(...details);
  $("error-bar").hidden = false;
}

export function clearError() {
  $("error-bar").hidden = true;
}

/** Shows what went wrong unless `api` has already shown it. */
export function reportFailure(error) {
  if (!error || error.name === "AbortError") return;
  if (error instanceof ApiError && error.shown) return;
  console.error(error);
  showError(error);
}
