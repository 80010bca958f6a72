/*
 * retrace dashboard: confirm.js
 *
 * Owns the confirmation dialog (<dialog id="confirm"> in index.html):
 * confirmAction() asks, with extra fields and an optional reason, and
 * resolves to the answer; one question at a time.
 *
 * It must never act on the answer: the caller sends the command.
 */

import { $ } from "./dom.js";

let confirmation = null; // {resolve, check} while the dialog is open

/**
 * Asks in the page's <dialog id="confirm">. `extra`: elements shown above
 * the reason; `check()`: a problem to show (the dialog stays open) or
 * null. Resolves to `{reason}` (reason "" when none) or null if dismissed.
 */
export function confirmAction({ title, text, okLabel = "Confirm", extra = [], check = () => null }) {
  const dialog = $("confirm");
  if (confirmation) finishConfirmation(null);
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text || "";
  $("confirm-extra").replaceChildren(...extra);
  $("confirm-reason").value = "";
  $("confirm-problem").hidden = true;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    confirmation = { resolve, check };
    dialog.showModal();
    $("confirm-reason").focus();
  });
}

function finishConfirmation(result) {
  const pending = confirmation;
  confirmation = null;
  if ($("confirm").open) $("confirm").close();
  if (pending) pending.resolve(result);
}

export function setUpConfirmDialog() {
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
  // Escape closes the dialog without a submit.
  $("confirm").addEventListener("close", () => {
    if (confirmation) finishConfirmation(null);
  });
}
