/*
 * retrace dashboard: api.js
 *
 * Owns every request to the HTTP API but the streams: api() adds the
 * access token, on 401 waits for one and retries, turns a failed answer
 * into an ApiError shown in the error bar (unless `quiet`), and notes the
 * server's clock (serverNow()).
 *
 * It must never cache an answer (every request is `no-store`), read a
 * stream (stream.js does), or draw anything but through access.js (the
 * error bar and the token form).
 */

import { ApiError, askForToken, currentToken, errorOf, showError } from "./access.js";

/** How far the server's clock is ahead of the browser's (from `Date`), in ms. */
let serverClockOffset = 0;

export function serverNow() {
  return Date.now() + serverClockOffset;
}

function noteServerClock(response) {
  const date = Date.parse(response.headers.get("date") || "");
  if (!Number.isNaN(date)) serverClockOffset = date - Date.now();
}

function requestInit(options, token) {
  const method = options.method || "GET";
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const init = { method, headers, cache: "no-store", signal: options.signal };
  if (method !== "GET") {
    // Every POST says its type, even with no body (the server requires it).
    if (options.text !== undefined) {
      headers.set("Content-Type", options.contentType || "application/json");
      init.body = options.text;
    } else {
      headers.set("Content-Type", "application/json");
      if (options.body !== undefined) init.body = JSON.stringify(options.body);
    }
  }
  return init;
}

/**
 * Every API call. `options`: `method`, `body` (sent as JSON), or `text`
 * with `contentType`, `headers`, `signal`, and `quiet` (do not show a
 * failure in the error bar: the caller shows it). Adds the access token
 * when one was given; on 401 shows the token form and retries once a
 * token is given. Resolves to the parsed JSON body (null for 204); throws
 * an ApiError with the server's error body otherwise.
 */
export async function api(path, options = {}) {
  for (;;) {
    const token = currentToken();
    let response;
    try {
      response = await fetch(path, requestInit(options, token));
    } catch (e) {
      if (e.name === "AbortError") throw e;
      const error = new ApiError(0, "network", `cannot reach the server (${e.message})`);
      if (!options.quiet) showError(error);
      error.shown = !options.quiet;
      throw error;
    }
    noteServerClock(response);
    if (response.status === 401) {
      const error = await errorOf(response);
      if (error.code !== "invalid_signature") {
        // A token given meanwhile is tried at once; otherwise ask for one.
        if (currentToken() === token) {
          await askForToken(token ? `The token was refused: ${error.message}` : error.message);
        }
        continue;
      }
      if (!options.quiet) showError(error);
      error.shown = !options.quiet;
      throw error;
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (!options.quiet) showError(error);
      error.shown = !options.quiet;
      throw error;
    }
    if (response.status === 204) return null;
    const type = response.headers.get("content-type") || "";
    return type.includes("json") ? response.json() : response.text();
  }
}
