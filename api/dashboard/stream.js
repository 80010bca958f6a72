/*
 * retrace dashboard: stream.js
 *
 * Owns reading the Server-Sent Events streams: openStream(). EventSource
 * cannot send an Authorization header, so streams are read with fetch
 * and parsed here: `id:`, `event:` and `data:` lines, a blank line ends a
 * frame, lines starting with `:` are comments (keep-alives). After a drop
 * it reconnects with `Last-Event-ID`, so every event arrives once; a 204
 * means the stream has nothing more (an execution that ended).
 *
 * It must never use EventSource (it cannot send the token) nor decide
 * what an event means: its caller's handlers do.
 */

import { ApiError, askForToken, currentToken, errorOf, reportFailure, showError } from "./access.js";
import { pause } from "./timing.js";

/**
 * Opens `path` as a stream. `handlers.onEvent({id, type, data})` for each
 * frame (data parsed as JSON), `handlers.onEnd()` once the server says
 * there is nothing more (204) or refuses the stream. `lastId` resumes
 * after that id. Returns `{close()}`.
 */
export function openStream(path, handlers, lastId = null) {
  const stream = { closed: false, lastId, controller: null };
  stream.close = () => {
    stream.closed = true;
    if (stream.controller) stream.controller.abort();
  };
  followStream(path, stream, handlers).catch(reportFailure);
  return stream;
}

async function followStream(path, stream, handlers) {
  let retryMs = 500;
  while (!stream.closed) {
    stream.controller = new AbortController();
    const token = currentToken();
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (stream.lastId !== null) headers["Last-Event-ID"] = String(stream.lastId);
    let response = null;
    try {
      response = await fetch(path, { headers, cache: "no-store", signal: stream.controller.signal });
    } catch {
      response = null; // the server is away: try again, more slowly
    }
    if (stream.closed) return;
    if (response && response.status === 204) {
      if (handlers.onEnd) handlers.onEnd();
      return;
    }
    if (response && response.status === 401) {
      const error = await errorOf(response);
      if (currentToken() === token) await askForToken(error.message);
      continue;
    }
    if (response && !response.ok) {
      const error = await errorOf(response);
      showError(error);
      if (response.status !== 429 && response.status < 500) {
        if (handlers.onEnd) handlers.onEnd(error);
        return;
      }
    }
    if (response && response.ok) {
      retryMs = 500;
      await readFrames(response.body, stream, handlers);
      if (stream.closed) return;
      continue; // the stream ended or dropped: resume after the last id
    }
    await pause(retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  }
}

/** Reads frames from `body` until it ends or drops. */
async function readFrames(body, stream, handlers) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const frame = { id: null, type: "", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = lineEnd(buffer)) !== null) {
        const line = buffer.slice(0, end.at);
        buffer = buffer.slice(end.at + end.length);
        readLine(line, frame, stream, handlers);
      }
    }
  } catch {
    // aborted (the page changed) or dropped: the caller decides
  } finally {
    try {
      reader.releaseLock();
    } catch {
      // already released
    }
  }
}

/** Where the first complete line of `buffer` ends (CR, LF or CRLF), or null. */
function lineEnd(buffer) {
  const match = /\r\n|\r|\n/.exec(buffer);
  if (!match) return null;
  // A CR at the very end may be half of a CRLF: wait for the next chunk.
  if (match[0] === "\r" && match.index === buffer.length - 1) return null;
  return { at: match.index, length: match[0].length };
}

function readLine(line, frame, stream, handlers) {
  if (line === "") {
    dispatchFrame(frame, stream, handlers);
    return;
  }
  if (line.startsWith(":")) return; // a comment: keep-alive
  const colon = line.indexOf(":");
  const field = colon < 0 ? line : line.slice(0, colon);
  let value = colon < 0 ? "" : line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  if (field === "id") frame.id = value;
  else if (field === "event") frame.type = value;
  else if (field === "data") frame.data.push(value);
}

function dispatchFrame(frame, stream, handlers) {
  const { id, type } = frame;
  const text = frame.data.join("\n");
  const hasData = frame.data.length > 0;
  frame.id = null;
  frame.type = "";
  frame.data = [];
  if (id !== null) stream.lastId = id;
  if (!hasData || stream.closed) return;
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    // kept as text
  }
  if (type === "error") {
    // A journal error ends the stream; its data is an error body.
    const error = data && data.error ? new ApiError(500, data.error.code, data.error.message) : new Error(text);
    showError(error);
    return;
  }
  try {
    handlers.onEvent({ id, type: type || "message", data });
  } catch (e) {
    reportFailure(e);
  }
}
