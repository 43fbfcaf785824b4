// The Keys screen: every API key, revoked ones too; a new key's token shown once, with a
// button that copies it; a revoke confirmed in a dialog.

import { getJson } from "./api";
import { el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import type { Context, Screen } from "./screen";
import { confirmDialog, describe, formatTime, send } from "./send";

export interface Key {
  id: string;
  name: string;
  scope: string;
  environment: string | null;
  prefix: string;
  created_at: string;
  revoked_at: string | null;
  token?: string;
}

const KEYS = "/api/v1/keys";

export function openKeys(context: Context): Screen {
  return new KeysScreen(context);
}

class KeysScreen implements Screen {
  readonly root: HTMLElement;
  private readonly list: HTMLElement;
  private readonly status: HTMLElement;
  private readonly created: HTMLElement;
  private readonly name: HTMLInputElement;
  private readonly scope: HTMLSelectElement;
  private readonly environment: HTMLSelectElement;
  private closed = false;

  constructor(private readonly context: Context) {
    this.name = el("input", { id: "key-name", type: "text", required: "", maxlength: "256", autocomplete: "off" });
    this.scope = el(
      "select",
      { id: "key-scope" },
      el("option", { value: "client" }, "client (browsers and apps: OFREP, one environment)"),
      el("option", { value: "server" }, "server (SDKs on servers, one environment)"),
      el("option", { value: "admin" }, "admin (this console and the admin API)"),
    );
    this.environment = el("select", { id: "key-environment" });
    this.fillEnvironments(context.environments.map((environment) => environment.name));
    this.scope.addEventListener("change", () => {
      // Admin keys belong to no environment; the server refuses one.
      this.environment.disabled = this.scope.value === "admin";
    });
    const form = el(
      "form",
      { class: "create", "aria-labelledby": "create-key-heading" },
      el("h2", { id: "create-key-heading" }, "Create a key"),
      el("p", {}, el("label", { for: "key-name" }, "Name"), " ", this.name),
      el("p", {}, el("label", { for: "key-scope" }, "Scope"), " ", this.scope),
      el("p", {}, el("label", { for: "key-environment" }, "Key environment"), " ", this.environment),
      el("p", {}, el("button", { type: "submit" }, "Create key")),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.create();
    });
    this.status = el("p", { role: "status", class: "status" }, "Loading…");
    this.created = el("div", { "aria-live": "polite" });
    this.list = el("div");
    this.root = el(
      "section",
      { "aria-labelledby": "keys-heading" },
      el("h1", { id: "keys-heading" }, "Keys"),
      form,
      this.created,
      this.status,
      this.list,
    );
  }

  private fillEnvironments(names: string[]): void {
    const chosen = this.environment.value || this.context.environment;
    replaceChildren(this.environment, ...names.map((name) => el("option", { value: name }, name)));
    if (names.includes(chosen)) {
      this.environment.value = chosen;
    }
  }

  async load(): Promise<void> {
    try {
      const keys = await getJson<Key[]>(KEYS);
      if (!this.closed) {
        this.render(keys);
      }
    } catch (failure) {
      this.status.textContent = `Could not load the keys: ${describe(failure)}`;
    }
  }

  event(event: LiveEvent): void {
    // A key of a deleted environment is revoked with it.
    if (event.event === "environment_deleted" || event.event === "reset") {
      void this.load();
    }
  }

  close(): void {
    this.closed = true;
  }

  private async create(): Promise<void> {
    const scope = this.scope.value;
    const body: Record<string, string> = { name: this.name.value.trim(), scope };
    if (scope !== "admin") {
      body["environment"] = this.environment.value;
    }
    try {
      const key = await send<Key>("POST", KEYS, body);
      if (key === null || typeof key.token !== "string") {
        throw new Error("the server sent no token");
      }
      this.showToken(key, key.token);
      this.name.value = "";
      await this.load();
    } catch (failure) {
      replaceChildren(this.created, el("p", { role: "alert", class: "error" }, `Could not create the key: ${describe(failure)}`));
    }
  }

  /** The token lives in this box only: it is not kept anywhere, and the server never sends it again. */
  private showToken(key: Key, token: string): void {
    const copied = el("span", { role: "status" });
    const copy = el("button", { type: "button" }, "Copy");
    copy.addEventListener("click", () => {
      navigator.clipboard.writeText(token).then(
        () => {
          copied.textContent = "Copied.";
        },
        (failure: unknown) => {
          copied.textContent = `Could not copy (${describe(failure)}): select the token and copy it.`;
        },
      );
    });
    const done = el("button", { type: "button" }, "Done");
    done.addEventListener("click", () => replaceChildren(this.created));
    replaceChildren(
      this.created,
      el(
        "section",
        { class: "token", "aria-labelledby": "token-heading" },
        el("h2", { id: "token-heading" }, `Token of ${key.name}`),
        el("p", {}, "It is shown this once: copy it now. The server keeps only its hash."),
        el("p", {}, el("code", { class: "token-value" }, token), " ", copy, " ", copied),
        el("p", {}, done),
      ),
    );
    copy.focus();
  }

  private async revoke(key: Key): Promise<void> {
    const yes = await confirmDialog({
      title: `Revoke ${key.name}?`,
      body: [el("p", {}, `The ${key.scope} key ${key.name} (${key.prefix}…) stops working at once. This cannot be undone.`)],
      confirm: "Revoke key",
    });
    if (!yes) {
      return;
    }
    try {
      await send<Key>("DELETE", `${KEYS}/${encodeURIComponent(key.id)}`);
      await this.load();
    } catch (failure) {
      this.status.textContent = `Could not revoke ${key.name}: ${describe(failure)}`;
    }
  }

  private render(keys: Key[]): void {
    const active = keys.filter((key) => key.revoked_at === null).length;
    this.status.textContent = `${keys.length} key${keys.length === 1 ? "" : "s"}, ${active} active`;
    if (keys.length === 0) {
      replaceChildren(this.list, el("p", {}, "No keys."));
      return;
    }
    const body = el("tbody");
    for (const key of keys) {
      let action: HTMLElement | string = "";
      if (key.revoked_at === null) {
        const revoke = el("button", { type: "button", "aria-label": `Revoke ${key.name}` }, "Revoke");
        revoke.addEventListener("click", () => void this.revoke(key));
        action = revoke;
      }
      body.appendChild(
        el(
          "tr",
          { "data-key": key.id },
          el("th", { scope: "row" }, key.name),
          el("td", {}, key.scope),
          el("td", {}, key.environment ?? "—"),
          el("td", {}, el("code", {}, key.prefix)),
          el("td", {}, formatTime(key.created_at)),
          el("td", { class: key.revoked_at === null ? "on" : "killed" }, key.revoked_at === null ? "Active" : `Revoked ${formatTime(key.revoked_at)}`),
          el("td", {}, action),
        ),
      );
    }
    replaceChildren(
      this.list,
      el(
        "table",
        { class: "flags" },
        el("caption", {}, "Keys"),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ...["Name", "Scope", "Environment", "Prefix", "Created", "State"].map((name) => el("th", { scope: "col" }, name)),
            el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")),
          ),
        ),
        body,
      ),
    );
  }
}
