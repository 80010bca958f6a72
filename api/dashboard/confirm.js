/*
 * retrace dashboard: confirm.js
 *
 * Owns the confirmation dialog (<dialog id="confirm"> in index.html):
 * confirmAction() asks, with extra fields and an optional reason, and
 * resolves to the answer; one question at a time. The dialog is modal
 * (the page behind it is inert), keeps the keyboard's focus inside it
 * (Tab and Shift+Tab wrap around), closes on Escape as "Back", and gives
 * the focus back to what had it when it opened.
 *
 * It must never act on the answer: the caller sends the command.
 */

import { $ } from "./dom.js";

let confirmation = null; // {resolve, check, opener} while the dialog is open

/**
 * Asks in the page's <dialog id="confirm">. `extra`: elements shown above
 * the reason; `check()`: a problem to show (the dialog stays open) or
 * null. Resolves to `{reason}` (reason "" when none) or null if dismissed.
 */
export function confirmAction({ title, text, okLabel = "Confirm", extra = [], check = () => null }) {
  const dialog = $("confirm");
  if (confirmation) finishConfirmation(null);
  const opener = document.activeElement;
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text || "";
  $("confirm-extra").replaceChildren(...extra);
  $("confirm-reason").value = "";
  $("confirm-problem").hidden = true;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    confirmation = { resolve, check, opener };
    dialog.showModal();
    $("confirm-reason").focus();
  });
}

function finishConfirmation(result) {
  const pending = confirmation;
  confirmation = null;
  if ($("confirm").open) $("confirm").close();
  if (!pending) return;
  // Back to where the keyboard was, if that is still on the page.
  if (pending.opener && pending.opener.isConnected && typeof pending.opener.focus === "function") {
    pending.opener.focus();
  }
  pending.resolve(result);
}

/** The dialog's elements the keyboard can reach, in order. */
function focusable(dialog) {
  const selector = "button, input, select, textarea, a[href], [tabindex]:not([tabindex='-1'])";
  return [...dialog.querySelectorAll(selector)].filter((e) => !e.disabled && !e.closest("[hidden]"));
}

/** Tab from the last element goes to the first, Shift+Tab from the first to the last. */
function trapFocus(event) {
  if (event.key !== "Tab") return;
  const dialog = $("confirm");
  const items = focusable(dialog);
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  const inside = dialog.contains(document.activeElement);
  if (event.shiftKey && (document.activeElement === first || !inside)) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
    event.preventDefault();
    first.focus();
  }
}

export function setUpConfirmDialog() {
  const dialog = $("confirm");
  $("confirm-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!confirmation) return;
    if (!event.submitter || event.submitter.value !== "ok") {
      finishConfirmation(null);
      return;
    }
    const problem = confirmation.check();
    if (problem) {
      $("confirm-problem").textContent = problem;
      $("confirm-problem").hidden = false;
      return;
    }
    finishConfirmation({ reason: $("confirm-reason").value.trim() });
  });
  dialog.addEventListener("keydown", trapFocus);
  // Escape: the browser cancels the dialog and closes it, without a submit.
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    finishConfirmation(null);
  });
  dialog.addEventListener("close", () => {
    if (confirmation) finishConfirmation(null);
  });
}
