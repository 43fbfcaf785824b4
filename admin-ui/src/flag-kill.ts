// The kill switch's confirmations. A modal `<dialog>` keeps the focus inside it while open,
// closes on Escape and gives the focus back, so the switch works from the keyboard alone.
// The reason goes to the audit entry of the change.

import { el } from "./dom";

export interface Confirmation {
  /** The dialog's title. */
  title: string;
  text: string;
  /** The name of the button that does it. */
  confirm: string;
  danger: boolean;
  /** Does it; answers an error to show in the dialog, or null when done. */
  run(reason: string): Promise<string | null>;
  /** After the dialog closed, done or not. */
  closed(): void;
}

let dialogs = 0;

/** Opens the dialog inside `parent`, so that it goes with the page it belongs to. */
export function confirmWithReason(parent: HTMLElement, confirmation: Confirmation): void {
  dialogs += 1;
  const id = `confirm-${dialogs}`;
  const reason = el("input", { type: "text", id: `${id}-reason`, maxlength: "1000", autocomplete: "off" });
  const error = el("p", { role: "alert", class: "error" });
  const confirm = el("button", { type: "submit", class: confirmation.danger ? "danger" : undefined }, confirmation.confirm);
  const cancel = el("button", { type: "button" }, "Cancel");
  const form = el(
    "form",
    {},
    el("h2", { id: `${id}-title` }, confirmation.title),
    el("p", { id: `${id}-text` }, confirmation.text),
    el(
      "div",
      { class: "field" },
      el("label", { for: reason.id }, "Reason"),
      reason,
      el("span", { class: "hint", id: `${id}-hint` }, "Kept in the audit log with the change, e.g. an incident id."),
    ),
    error,
    el("div", { class: "buttons" }, confirm, cancel),
  );
  reason.setAttribute("aria-describedby", `${id}-hint`);
  const dialog = el("dialog", { "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-text` }, form);
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    dialog.remove();
    confirmation.closed();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    confirm.disabled = true;
    error.textContent = "";
    void confirmation.run(reason.value.trim()).then((failure) => {
      confirm.disabled = false;
      if (failure === null) {
        dialog.close();
      } else {
        error.textContent = failure;
        reason.focus();
      }
    });
  });
  parent.append(dialog);
  dialog.showModal();
  reason.focus();
}
