// The Flags screen: one environment's flags with their state and last change, kept current
// by the live event stream.

import { type AuditEntry, type AuditPage, type FlagEntry, getJson, path } from "./api";
import { el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import { type Context, type Screen, changeOf } from "./screen";

export interface Row {
  key: string;
  type: string;
  killed: boolean;
  rollout: string;
  lastChange: string;
  description: string;
}

/** What a row shows, from the flag and the newest audit entry about it. */
export function row(entry: FlagEntry, last: AuditEntry | undefined): Row {
  const flag = entry.flag;
  const percentage = flag.rollout?.percentage;
  return {
    key: entry.key,
    type: typeof flag.type === "string" ? flag.type : "",
    // A flag without `enabled` is on: only an explicit `false` is the kill switch.
    killed: flag.enabled === false,
    rollout: typeof percentage === "number" ? `${percentage}%` : "—",
    lastChange:
      last === undefined
        ? `revision ${entry.revision}`
        : `${last.actor}, ${formatTime(last.time)}`,
    description: typeof flag.description === "string" ? flag.description : "",
  };
}

function formatTime(time: string): string {
  const parsed = new Date(time);
  if (Number.isNaN(parsed.getTime())) {
    return time;
  }
  return parsed.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
}

/** The newest entry about each flag; entries come newest first. */
function lastChanges(entries: AuditEntry[]): Map<string, AuditEntry> {
  const last = new Map<string, AuditEntry>();
  for (const entry of entries) {
    if ((entry.action.startsWith("flag.") || entry.action.startsWith("ramp.")) && !last.has(entry.target)) {
      last.set(entry.target, entry);
    }
  }
  return last;
}

export function openFlags(context: Context): Screen {
  return new FlagsScreen(context.environment);
}

export class FlagsScreen implements Screen {
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly status: HTMLElement;
  private readonly search: HTMLInputElement;
  private rows: Row[] = [];
  private loading = false;
  private again = false;

  constructor(private readonly environment: string) {
    this.search = el("input", { type: "search", id: "flag-search", autocomplete: "off" });
    this.search.addEventListener("input", () => this.render());
    this.status = el("p", { role: "status", class: "status" }, "Loading…");
    this.body = el("div");
    this.root = el(
      "section",
      { "aria-labelledby": "flags-heading" },
      el("h1", { id: "flags-heading" }, "Flags"),
      el("p", { class: "search" }, el("label", { for: "flag-search" }, "Search flags"), " ", this.search),
      this.status,
      this.body,
    );
  }

  event(event: LiveEvent): void {
    const change = changeOf(event);
    if (event.event === "reset" || (change !== null && change.environment === this.environment)) {
      void this.load();
    }
  }

  /** Reads the flags afresh; calls that arrive during a load cause one more load after it. */
  async load(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      do {
        this.again = false;
        // Both at once: the list does not wait for the audit log.
        const [flags, audit] = await Promise.all([
          getJson<FlagEntry[]>(path.flags(this.environment)),
          getJson<AuditPage>(path.audit(this.environment)).catch(() => ({ entries: [], next: null })),
        ]);
        const last = lastChanges(audit.entries);
        this.rows = flags.map((entry) => row(entry, last.get(entry.key)));
        this.status.textContent = `${flags.length} flag${flags.length === 1 ? "" : "s"} in ${this.environment}`;
        this.render();
      } while (this.again);
    } catch (error) {
      this.status.textContent = `Could not load the flags: ${error instanceof Error ? error.message : String(error)}`;
    } finally {
      this.loading = false;
    }
  }

  private render(): void {
    const query = this.search.value.trim().toLowerCase();
    const shown = query === ""
      ? this.rows
      : this.rows.filter((row) => row.key.toLowerCase().includes(query) || row.description.toLowerCase().includes(query));
    if (shown.length === 0) {
      replaceChildren(this.body, el("p", {}, this.rows.length === 0 ? "No flags yet." : "No flag matches."));
      return;
    }
    const tbody = el("tbody");
    for (const row of shown) {
      tbody.appendChild(
        el(
          "tr",
          { "data-flag": row.key },
          el(
            "th",
            { scope: "row" },
            el("a", { href: `#/flags/${encodeURIComponent(row.key)}` }, row.key),
            row.description === "" ? null : el("div", { class: "description" }, row.description),
          ),
          el("td", {}, row.type),
          el("td", { class: row.killed ? "killed" : "on" }, row.killed ? "Killed" : "On"),
          el("td", { class: "number" }, row.rollout),
          el("td", {}, row.lastChange),
        ),
      );
    }
    replaceChildren(
      this.body,
      el(
        "table",
        { class: "flags" },
        el("caption", {}, `Flags in ${this.environment}`),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, "Key"),
            el("th", { scope: "col" }, "Type"),
            el("th", { scope: "col" }, "State"),
            el("th", { scope: "col" }, "Rollout"),
            el("th", { scope: "col" }, "Last change"),
          ),
        ),
        tbody,
      ),
    );
  }
}
