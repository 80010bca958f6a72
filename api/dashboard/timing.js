/*
 * retrace dashboard: timing.js
 *
 * Owns when code runs: pause() (a promise resolved after a delay) and
 * coalesce() (a function run one call at a time, the last call made
 * meanwhile kept and run after).
 *
 * It must never touch the DOM or the network itself: a coalesced call's
 * failure goes to reportFailure (access.js).
 */

import { reportFailure } from "./access.js";

export function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs `fn` one call at a time: a call made while one runs is kept (the
 * last one wins) and runs after it. For refreshes that events trigger in
 * bursts, and for a slider dragged faster than the server answers.
 */
export function coalesce(fn) {
  let running = false;
  let pending = null;
  const run = async (...args) => {
    if (running) {
      pending = args;
      return;
    }
    running = true;
    try {
      await fn(...args);
    } catch (e) {
      reportFailure(e);
    } finally {
      running = false;
    }
    if (pending) {
      const next = pending;
      pending = null;
      run(...next);
    }
  };
  return run;
}
