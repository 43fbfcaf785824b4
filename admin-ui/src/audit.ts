// The Audit log screen: who changed what, when and why, filtered by environment, flag and
// actor, a page at a time; each entry's before and after shown as a diff.

import { type AuditEntry, type AuditPage, getJson } from "./api";
import { el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import { lazy } from "./chunk";
import type { Context, Screen } from "./screen";
import { describe, formatTime } from "./send";

/** An entry as the server sends it: `before`, `after`, `operation` and `revision` too. */
export interface FullEntry extends AuditEntry {
  operation?: string;
  before?: unknown;
  after?: unknown;
  revision?: number | null;
}

const PAGE = 50;
/**
 * The server filters by environment and flag; the actor is filtered here, over pages of
 * the largest size. Reading stops after this many pages so that a rare actor does not make
 * one click read the whole log; the next click goes on from there.
 */
const ACTOR_PAGES = 20;
const ACTOR_PAGE = 500;

export function openAudit(context: Context): Screen {
  return new AuditScreen(context);
}

interface Filter {
  environment: string;
  flag: string;
  actor: string;
}

class AuditScreen implements Screen {
  readonly root: HTMLElement;
  private readonly environment: HTMLSelectElement;
  private readonly flag: HTMLInputElement;
  private readonly actor: HTMLInputElement;
  private readonly status: HTMLElement;
  private readonly list: HTMLOListElement;
  private readonly more: HTMLButtonElement;
  private filter: Filter;
  private next: number | null = null;
  private shown = 0;
  private pages = 0;
  /** Bumped by every new query: an answer to an older one is dropped. */
  private generation = 0;
  private closed = false;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(context: Context) {
    this.environment = el(
      "select",
      { id: "audit-environment" },
      el("option", { value: "" }, "Every environment"),
      ...context.environments.map((environment) => el("option", { value: environment.name }, environment.name)),
    );
    this.environment.value = context.environment;
    this.flag = el("input", { id: "audit-flag", type: "search", autocomplete: "off" });
    this.actor = el("input", { id: "audit-actor", type: "search", autocomplete: "off" });
    this.filter = this.read();
    const form = el(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter the audit log" },
      el("label", { for: "audit-environment" }, "Filter by environment"),
      this.environment,
      el("label", { for: "audit-flag" }, "Filter by flag"),
      this.flag,
      el("label", { for: "audit-actor" }, "Filter by actor"),
      this.actor,
      el("button", { type: "submit" }, "Filter"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.filter = this.read();
      void this.load();
    });
    this.environment.addEventListener("change", () => form.requestSubmit());
    this.status = el("p", { role: "status", class: "status" }, "Loading…");
    this.list = el("ol", { class: "audit" });
    this.more = el("button", { type: "button", hidden: "" }, "Older entries");
    this.more.addEventListener("click", () => void this.page(this.generation));
    this.root = el(
      "section",
      { "aria-labelledby": "audit-heading" },
      el("h1", { id: "audit-heading" }, "Audit log"),
      form,
      this.status,
      this.list,
      el("p", {}, this.more),
    );
  }

  private read(): Filter {
    return {
      environment: this.environment.value,
      flag: this.flag.value.trim(),
      actor: this.actor.value.trim(),
    };
  }

  /** The first page of the current filter, afresh. */
  async load(): Promise<void> {
    this.generation += 1;
    this.next = null;
    this.shown = 0;
    this.pages = 0;
    replaceChildren(this.list);
    this.status.textContent = "Loading…";
    await this.page(this.generation);
  }

  event(event: LiveEvent): void {
    // New entries come first: the log is read again while only its first page is shown,
    // so that a reader who has paged back is not moved. With an actor, one read may be
    // twenty pages: it waits for the person to ask again.
    if (this.pages > 1 || this.filter.actor !== "") {
      return;
    }
    const data = (typeof event.data === "object" && event.data !== null ? event.data : {}) as { environment?: unknown };
    const concerns = this.filter.environment === "" || data.environment === this.filter.environment;
    if ((event.event === "change" || event.event === "ramp" || event.event === "environment_deleted") && concerns) {
      // A kill is a ramp event and a change at once, an import many changes: one read
      // for a burst.
      if (this.timer === null) {
        this.timer = setTimeout(() => {
          this.timer = null;
          if (!this.closed) {
            void this.load();
          }
        }, 250);
      }
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
    }
  }

  private query(before: number | null, limit: number): string {
    const parameters = new URLSearchParams();
    if (this.filter.environment !== "") {
      parameters.set("environment", this.filter.environment);
    }
    if (this.filter.flag !== "") {
      parameters.set("flag", this.filter.flag);
    }
    parameters.set("limit", String(limit));
    if (before !== null) {
      parameters.set("before", String(before));
    }
    return `/api/v1/audit?${parameters.toString()}`;
  }

  private async page(generation: number): Promise<void> {
    const actor = this.filter.actor.toLowerCase();
    const before = this.next;
    this.more.disabled = true;
    try {
      let cursor = before;
      let found: FullEntry[] = [];
      let read = 0;
      // Without an actor one page is one request; with one, pages are read until a page's
      // worth matched, the log ends, or the bound is reached.
      do {
        const answer = await getJson<AuditPage & { entries: FullEntry[] }>(this.query(cursor, actor === "" ? PAGE : ACTOR_PAGE));
        if (generation !== this.generation || this.closed) {
          return;
        }
        read += 1;
        found = found.concat(actor === "" ? answer.entries : answer.entries.filter((entry) => entry.actor.toLowerCase().includes(actor)));
        cursor = answer.next;
      } while (actor !== "" && cursor !== null && found.length < PAGE && read < ACTOR_PAGES);
      this.next = cursor;
      this.pages += 1;
      for (const entry of found) {
        this.list.appendChild(show(entry));
      }
      this.shown += found.length;
      const what = [this.filter.environment === "" ? "every environment" : this.filter.environment];
      if (this.filter.flag !== "") {
        what.push(`flag ${this.filter.flag}`);
      }
      if (this.filter.actor !== "") {
        what.push(`actor containing “${this.filter.actor}”`);
      }
      this.status.textContent =
        this.shown === 0 && cursor === null
          ? `No entries for ${what.join(", ")}.`
          : `${this.shown} entr${this.shown === 1 ? "y" : "ies"} for ${what.join(", ")}, newest first${cursor === null ? "; that is all" : ""}.`;
      this.more.hidden = cursor === null;
    } catch (failure) {
      if (generation === this.generation) {
        this.status.textContent = `Could not read the audit log: ${describe(failure)}`;
      }
    } finally {
      this.more.disabled = false;
    }
  }
}

/** One entry: what happened, who, when, why, and the diff of the item. */
export function show(entry: FullEntry): HTMLElement {
  const where = entry.environment === null ? "" : ` in ${entry.environment}`;
  const facts = [formatTime(entry.time), entry.actor];
  if (typeof entry.operation === "string") {
    facts.push(entry.operation);
  }
  if (typeof entry.revision === "number") {
    facts.push(`revision ${entry.revision}`);
  }
  const hasItem = (entry.before !== undefined && entry.before !== null) || (entry.after !== undefined && entry.after !== null);
  return el(
    "li",
    { "data-entry": String(entry.id) },
    el("article", { "aria-label": `${entry.action} ${entry.target}` },
      el("h2", {}, `${entry.action} `, el("code", {}, entry.target), where),
      el("p", { class: "description" }, facts.join(" · ")),
      typeof entry.reason === "string" && entry.reason !== ""
        ? el("p", { class: "reason" }, el("strong", {}, "Reason: "), entry.reason)
        : null,
      hasItem ? diff(entry.before ?? null, entry.after ?? null) : null,
    ),
  );
}

/**
 * The item before and after as a line diff of their JSON: removed lines in `del`, added in
 * `ins`, each marked with - or + so the change reads without colour too. Unchanged runs
 * longer than a few lines are folded to their ends.
 */
export function diff(before: unknown, after: unknown): HTMLElement {
  const pre = el("pre", { class: "diff", "aria-label": "Before and after" });
  // The diff library is a chunk of its own, loaded with the first entry shown: the
  // console's first load carries only its own code.
  library ??= lazy(() => import("./audit-diff"));
  library.then(
    ({ fillDiff }) => fillDiff(pre, before, after),
    (failure: unknown) => {
      library = null;
      pre.textContent = describe(failure);
    },
  );
  return pre;
}

let library: Promise<typeof import("./audit-diff")> | null = null;
