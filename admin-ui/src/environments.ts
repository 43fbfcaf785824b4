// The Environments screen: every environment with its revision; create one, delete one
// once its name is typed (a delete takes its flags, segments and keys with it). After
// either, the header's Environment select is read again.

import { type Environment, getJson, path } from "./api";
import { el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import type { Context, Screen } from "./screen";
import { confirmDialog, describe, formatTime, send } from "./send";

export function openEnvironments(context: Context): Screen {
  return new EnvironmentsScreen(context);
}

/** How long a burst of live events is waited out before the list is read once. */
const SETTLE_MS = 250;

class EnvironmentsScreen implements Screen {
  readonly root: HTMLElement;
  private readonly list: HTMLElement;
  private readonly status: HTMLElement;
  private readonly problem: HTMLElement;
  private readonly name: HTMLInputElement;
  private closed = false;
  private reads = 0;
  /** The newest read whose answer is drawn. */
  private shown = 0;
  /** A read asked for by live events, waiting for the burst to end. */
  private pending: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly context: Context) {
    this.name = el("input", {
      id: "environment-name",
      type: "text",
      required: "",
      maxlength: "64",
      pattern: "[a-z0-9_\\-]{1,64}",
      autocomplete: "off",
      "aria-describedby": "environment-name-help",
    });
    this.problem = el("p", { role: "alert", class: "error" });
    const form = el(
      "form",
      { class: "create", "aria-labelledby": "create-environment-heading" },
      el("h2", { id: "create-environment-heading" }, "Create an environment"),
      el("p", {}, el("label", { for: "environment-name" }, "Name"), " ", this.name),
      el("p", { id: "environment-name-help", class: "description" }, "1 to 64 characters: a-z, 0-9, - and _."),
      el("p", {}, el("button", { type: "submit" }, "Create environment")),
      this.problem,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.create();
    });
    this.status = el("p", { role: "status", class: "status" }, "Loading…");
    this.list = el("div");
    this.root = el(
      "section",
      { "aria-labelledby": "environments-heading" },
      el("h1", { id: "environments-heading" }, "Environments"),
      this.status,
      this.list,
      form,
    );
  }

  async load(): Promise<void> {
    // Reads may overlap: an answer older than the one drawn is dropped. (Not "only the
    // latest": under a steady stream of changes that would never draw anything.)
    const read = ++this.reads;
    try {
      const environments = await getJson<Environment[]>(path.environments);
      if (!this.closed && read > this.shown) {
        this.shown = read;
        this.render(environments);
      }
    } catch (failure) {
      this.status.textContent = `Could not load the environments: ${describe(failure)}`;
    }
  }

  event(event: LiveEvent): void {
    // A change to any environment moves its revision; a deleted one leaves the list.
    // A burst of changes (an import, a running ramp) is read once, after it settles.
    if ((event.event === "change" || event.event === "environment_deleted" || event.event === "reset") && this.pending === null) {
      this.pending = setTimeout(() => {
        this.pending = null;
        void this.load();
      }, SETTLE_MS);
    }
  }

  close(): void {
    this.closed = true;
    if (this.pending !== null) {
      clearTimeout(this.pending);
      this.pending = null;
    }
  }

  private async create(): Promise<void> {
    const name = this.name.value.trim();
    this.problem.textContent = "";
    try {
      await send<Environment>("POST", path.environments, { name });
      this.name.value = "";
      this.status.textContent = `Created ${name}.`;
      await Promise.all([this.load(), this.context.refreshEnvironments()]);
    } catch (failure) {
      this.problem.textContent = `Could not create ${name}: ${describe(failure)}`;
    }
  }

  private async remove(environment: Environment): Promise<void> {
    const field = el("input", { id: "confirm-environment", type: "text", autocomplete: "off", spellcheck: "false" });
    const yes = await confirmDialog({
      title: `Delete ${environment.name}?`,
      body: [
        el("p", {}, `Every flag and segment of ${environment.name} is deleted, and its client and server keys stop working. Its audit entries stay.`),
        el("p", {}, el("label", { for: "confirm-environment" }, "Type the environment's name to confirm"), " ", field),
      ],
      confirm: "Delete environment",
      ready: { field, check: (value) => value === environment.name },
    });
    if (!yes || field.value !== environment.name) {
      return;
    }
    try {
      await send<null>("DELETE", `${path.environments}/${encodeURIComponent(environment.name)}`);
      this.status.textContent = `Deleted ${environment.name}.`;
      await Promise.all([this.load(), this.context.refreshEnvironments()]);
    } catch (failure) {
      this.status.textContent = `Could not delete ${environment.name}: ${describe(failure)}`;
    }
  }

  private render(environments: Environment[]): void {
    this.status.textContent = `${environments.length} environment${environments.length === 1 ? "" : "s"}`;
    const body = el("tbody");
    for (const environment of environments) {
      const remove = el("button", { type: "button", "aria-label": `Delete ${environment.name}` }, "Delete");
      remove.addEventListener("click", () => void this.remove(environment));
      body.appendChild(
        el(
          "tr",
          { "data-environment": environment.name },
          el("th", { scope: "row" }, environment.name),
          el("td", { class: "number" }, String(environment.revision)),
          el("td", {}, formatTime(environment.created_at)),
          el("td", {}, remove),
        ),
      );
    }
    replaceChildren(
      this.list,
      el(
        "table",
        { class: "flags" },
        el("caption", {}, "Environments"),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, "Name"),
            el("th", { scope: "col" }, "Revision"),
            el("th", { scope: "col" }, "Created"),
            el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")),
          ),
        ),
        body,
      ),
    );
  }
}
