// What the screens that change things share: a change sent to the admin API (with the
// server's message when it refuses one), a dialog that confirms it, and times and failures
// put in words.

import { ApiError, adminKey, errorMessage, headers } from "./api";

export async function send<T>(method: "POST" | "PUT" | "DELETE", path: string, body?: unknown): Promise<T | null> {
  const key = adminKey();
  if (key === null) {
    throw new ApiError(401, "not signed in");
  }
  const extra: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) {
    extra["Content-Type"] = "application/json";
  }
  const init: RequestInit = { method, headers: headers(key, extra) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    throw new ApiError(response.status, await errorMessage(response));
  }
  // 204 has no body.
  return response.status === 204 ? null : ((await response.json()) as T);
}

/** A failure as a sentence for the page. */
export function describe(failure: unknown): string {
  return failure instanceof Error ? failure.message : String(failure);
}

/**
 * RFC 3339 (or seconds since the epoch) as `2026-12-06 05:56:19 UTC`; anything else as it
 * is, and a missing time as a dash.
 */
export function formatTime(time: string | number | null | undefined): string {
  if (time === null || time === undefined) {
    return "—";
  }
  const parsed = typeof time === "number" ? new Date(time * 1000) : new Date(time);
  if (Number.isNaN(parsed.getTime())) {
    return String(time);
  }
  return parsed.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
}

/**
 * A modal `<dialog>` asking to confirm; resolves true when the confirming button is used.
 * The dialog is removed once answered, so a second confirm starts clean.
 */
export function confirmDialog(options: {
  title: string;
  body: (Node | string)[];
  confirm: string;
  /** When given, the confirming button stays disabled until this says yes. */
  ready?: { field: HTMLInputElement; check: (value: string) => boolean };
}): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.setAttribute("aria-labelledby", "confirm-title");
    const title = document.createElement("h2");
    title.id = "confirm-title";
    title.textContent = options.title;
    const form = document.createElement("form");
    form.method = "dialog";
    const yes = document.createElement("button");
    yes.type = "submit";
    yes.value = "yes";
    yes.textContent = options.confirm;
    yes.className = "danger";
    const no = document.createElement("button");
    no.type = "submit";
    no.value = "no";
    no.textContent = "Cancel";
    const buttons = document.createElement("p");
    buttons.className = "buttons";
    buttons.append(yes, " ", no);
    form.append(...options.body, buttons);
    dialog.append(title, form);
    const ready = options.ready;
    if (ready !== undefined) {
      yes.disabled = true;
      ready.field.addEventListener("input", () => {
        yes.disabled = !ready.check(ready.field.value);
      });
    }
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    (ready?.field ?? no).focus();
  });
}
