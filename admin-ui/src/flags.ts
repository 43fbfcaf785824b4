// The Flags screen: one environment's flags with their state, ramp and last change, kept
// current by the live event stream. A page of rows is drawn at a time, so ten thousand
// flags cost what a hundred do; search and filters run over all of them.

import { ApiError, type AuditEntry, type AuditPage, type FlagEntry, getJson, path } from "./api";
import { el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import { type Context, type Screen, changeOf } from "./screen";
import { describe, formatTime } from "./send";

/** Where a flag's ramp stands: `GET .../ramps` gives every one, `GET .../ramp` one. */
export interface RampSummary {
  flag: string;
  generation: number;
  status: string;
  pause_reason?: string;
  stage: number;
  stages: number[];
  percentage: number;
  hold?: string;
  alert?: string;
}

export interface Row {
  key: string;
  type: string;
  killed: boolean;
  rollout: string;
  lastChange: string;
  description: string;
  /** The ramp's status word (`running`, `killed`, ...), or "" without a ramp. */
  ramp: string;
  badge: string;
}

/** The rows drawn at once; the rest are a click away. */
export const PAGE_SIZE = 100;
/** A change naming more flags than this is read as a whole list: one request, not many. */
const FEW = 20;

/** What a row shows, from the flag, the newest audit entry about it and its ramp. */
export function row(entry: FlagEntry, last: AuditEntry | undefined, ramp?: RampSummary): Row {
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
    ramp: ramp?.status ?? "",
    badge: ramp === undefined ? "" : badge(ramp),
  };
}

const PAUSES: Record<string, string> = {
  inconclusive: "inconclusive at the longest stage time, waiting for a person",
  regression: "a guard regressed",
  manual: "paused by hand",
  invalid_config: "the ramp block does not fit its state",
  sample_ratio_mismatch: "the cohorts report in the wrong ratio",
};

const HOLDS: Record<string, string> = {
  warm_up: "warming up",
  min_duration: "minimum stage time",
  stage_samples: "gathering the stage's samples",
  sample_ratio: "cohorts' counts in doubt",
  inconclusive: "evidence inconclusive so far",
  no_guards: "no guards: advance by hand",
  data_error: "the data could not be judged",
  no_data: "no observations: check the apps' reports",
};

/** The ramp in a few words: stage k of n and its percentage, or how it ended and why it waits. */
export function badge(ramp: RampSummary): string {
  const n = ramp.stages.length;
  const at = `stage ${Math.min(ramp.stage + 1, n)} of ${n} · ${ramp.percentage}%`;
  switch (ramp.status) {
    case "pending":
      return `Not started · ${n} stage${n === 1 ? "" : "s"}`;
    case "running":
      return ramp.hold === undefined ? `Ramping: ${at}` : `Ramping: ${at} · ${HOLDS[ramp.hold] ?? ramp.hold}`;
    case "paused":
      return `Paused at ${at} · ${PAUSES[ramp.pause_reason ?? ""] ?? ramp.pause_reason ?? "paused"}`;
    case "killed":
      return `Killed at stage ${Math.min(ramp.stage + 1, n)} of ${n}`;
    case "completed":
      return `Completed · ${ramp.percentage}%`;
    case "aborted":
      return "Aborted";
    default:
      return ramp.status;
  }
}

/** The newest entry about each flag; entries come newest first. */
function lastChanges(entries: AuditEntry[]): Map<string, AuditEntry> {
  const last = new Map<string, AuditEntry>();
  for (const entry of entries) {
    if (concernsFlag(entry) && !last.has(entry.target)) {
      last.set(entry.target, entry);
    }
  }
  return last;
}

function concernsFlag(entry: AuditEntry): boolean {
  return entry.action.startsWith("flag.") || entry.action.startsWith("ramp.");
}

export function openFlags(context: Context): Screen {
  return new FlagsScreen(context.environment);
}

const STATES: readonly [string, string][] = [
  ["", "Any state"],
  ["on", "On"],
  ["killed", "Killed"],
];

const RAMPS: readonly [string, string][] = [
  ["", "With or without"],
  ["any", "Has a ramp"],
  ["none", "No ramp"],
  ["running", "Ramping"],
  ["paused", "Paused"],
  ["killed", "Killed by its ramp"],
  ["completed", "Completed"],
  ["pending", "Not started"],
];

export class FlagsScreen implements Screen {
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly status: HTMLElement;
  private readonly search: HTMLInputElement;
  private readonly state: HTMLSelectElement;
  private readonly rampFilter: HTMLSelectElement;
  private readonly pager: HTMLElement;
  private readonly previous: HTMLButtonElement;
  private readonly next: HTMLButtonElement;
  private readonly position: HTMLElement;
  private entries = new Map<string, FlagEntry>();
  private last = new Map<string, AuditEntry>();
  private ramps = new Map<string, RampSummary>();
  private rows: Row[] = [];
  private page = 0;
  private loading = false;
  private again = false;
  /** Flags named by live changes, read one by one once the current read is done. */
  private pending = new Set<string>();
  private refreshing = false;
  private closed = false;
  /** Every read is numbered when sent, so that an answer older than what is shown is dropped. */
  private sent = 0;
  /** The number of the full read shown. */
  private baseline = 0;
  /** Per flag, the number of the newest single read shown. */
  private stamps = new Map<string, number>();
  /** The ramps could not be read: the badges shown are the last ones read. */
  private rampsFailed: string | null = null;
  /** Flags whose own ramp read failed: their badges are the last ones read. */
  private staleRamps = new Set<string>();

  constructor(private readonly environment: string) {
    this.search = el("input", { type: "search", id: "flag-search", autocomplete: "off" });
    this.state = el("select", { id: "flag-state" }, ...STATES.map(([value, name]) => el("option", { value }, name)));
    this.rampFilter = el("select", { id: "flag-ramp" }, ...RAMPS.map(([value, name]) => el("option", { value }, name)));
    for (const control of [this.search, this.state, this.rampFilter]) {
      control.addEventListener(control === this.search ? "input" : "change", () => {
        this.page = 0;
        this.render();
      });
    }
    this.status = el("p", { role: "status", class: "status" }, "Loading…");
    this.body = el("div");
    this.previous = el("button", { type: "button" }, "Previous page");
    this.previous.addEventListener("click", () => {
      this.page -= 1;
      this.render();
    });
    this.next = el("button", { type: "button" }, "Next page");
    this.next.addEventListener("click", () => {
      this.page += 1;
      this.render();
    });
    this.position = el("span");
    this.pager = el("nav", { class: "pager", "aria-label": "Pages of flags", hidden: "" }, this.previous, this.position, this.next);
    this.root = el(
      "section",
      { "aria-labelledby": "flags-heading" },
      el("h1", { id: "flags-heading" }, "Flags"),
      el(
        "p",
        { class: "search" },
        el("label", { for: "flag-search" }, "Search flags"),
        " ",
        this.search,
        " ",
        el("label", { for: "flag-state" }, "State"),
        " ",
        this.state,
        " ",
        el("label", { for: "flag-ramp" }, "Ramp"),
        " ",
        this.rampFilter,
      ),
      this.status,
      this.body,
      this.pager,
    );
  }

  event(event: LiveEvent): void {
    if (event.event === "reset") {
      void this.load();
      return;
    }
    const data = (typeof event.data === "object" && event.data !== null ? event.data : {}) as { environment?: unknown; flag?: unknown };
    if (event.event === "ramp" && data.environment === this.environment && typeof data.flag === "string") {
      this.refresh([data.flag]);
      return;
    }
    const change = changeOf(event);
    if (change === null || change.environment !== this.environment) {
      return;
    }
    // Only the flags a change names are read again; without names, or with many, the list.
    if (change.flags === null || change.flags.length > FEW) {
      void this.load();
    } else {
      this.refresh(change.flags);
    }
  }

  close(): void {
    this.closed = true;
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
        const sent = ++this.sent;
        // Every read at once: the list waits for none of the others. A server without the
        // ramp summaries (404) still lists the flags; one that fails to give them keeps
        // the badges shown, marked as possibly stale, rather than wiping them all.
        const [flags, audit, ramps] = await Promise.all([
          getJson<FlagEntry[]>(path.flags(this.environment)),
          getJson<AuditPage>(path.audit(this.environment)).catch(() => ({ entries: [], next: null })),
          getJson<RampSummary[]>(rampsPath(this.environment)).catch((failure: unknown) =>
            failure instanceof ApiError && failure.status === 404 ? [] : failure instanceof Error ? failure : new Error(String(failure)),
          ),
        ]);
        if (this.closed) {
          return;
        }
        this.merge(sent, flags, lastChanges(audit.entries), ramps instanceof Error ? null : new Map(ramps.map((ramp) => [ramp.flag, ramp])));
        this.rampsFailed = ramps instanceof Error ? ramps.message : null;
        this.rebuild();
        this.render();
        // After the next frame: the table laid out and painted, as a person sees it.
        requestAnimationFrame(() => setTimeout(() => performance.mark("ripcord:flags-drawn"), 0));
      } while (this.again);
    } catch (error) {
      this.status.textContent = `Could not load the flags: ${describe(error)}`;
    } finally {
      this.loading = false;
    }
  }

  /**
   * Shows a full read numbered `sent`. A flag read alone after it was sent (a live change
   * that landed meanwhile) keeps what that read found, and an entry keeps the higher of two
   * revisions: a slow full read never puts back a state that a newer one replaced.
   */
  private merge(sent: number, flags: FlagEntry[], last: Map<string, AuditEntry>, ramps: Map<string, RampSummary> | null): void {
    const entries = new Map<string, FlagEntry>();
    const newerLast = new Map<string, AuditEntry>();
    const newerRamps = new Map<string, RampSummary>();
    const keepOld = (key: string): void => {
      const old = this.entries.get(key);
      if (old !== undefined) {
        entries.set(key, old);
      }
      const oldLast = this.last.get(key);
      if (oldLast !== undefined) {
        newerLast.set(key, oldLast);
      }
      const oldRamp = this.ramps.get(key);
      if (oldRamp !== undefined) {
        newerRamps.set(key, oldRamp);
      }
    };
    for (const entry of flags) {
      const old = this.entries.get(entry.key);
      if ((this.stamps.get(entry.key) ?? 0) > sent || (old !== undefined && old.revision > entry.revision)) {
        keepOld(entry.key);
        continue;
      }
      entries.set(entry.key, entry);
      const newest = last.get(entry.key);
      const oldLast = this.last.get(entry.key);
      const kept = newest === undefined || (oldLast !== undefined && oldLast.id > newest.id) ? oldLast : newest;
      if (kept !== undefined) {
        newerLast.set(entry.key, kept);
      }
      const ramp = ramps === null ? this.ramps.get(entry.key) : ramps.get(entry.key);
      if (ramp !== undefined) {
        newerRamps.set(entry.key, ramp);
      }
      if (ramps !== null) {
        this.staleRamps.delete(entry.key);
      }
    }
    // Flags the full read did not have, but a newer single read did: created meanwhile.
    for (const [key, stamp] of this.stamps) {
      if (stamp > sent && !entries.has(key)) {
        keepOld(key);
      }
    }
    for (const [key, stamp] of [...this.stamps]) {
      if (stamp <= sent) {
        this.stamps.delete(key);
      }
    }
    this.baseline = Math.max(this.baseline, sent);
    this.entries = entries;
    this.last = newerLast;
    this.ramps = newerRamps;
  }

  private rebuild(): void {
    this.rows = [...this.entries.values()].map((entry) => row(entry, this.last.get(entry.key), this.ramps.get(entry.key)));
  }

  /** Reads the named flags again: each flag, its newest audit entry and, if it has one, its ramp. */
  private refresh(keys: readonly string[]): void {
    for (const key of keys) {
      this.pending.add(key);
    }
    if (this.refreshing) {
      return;
    }
    this.refreshing = true;
    void (async () => {
      try {
        while (this.pending.size > 0 && !this.closed) {
          const keys = [...this.pending];
          this.pending.clear();
          await Promise.all(keys.map((key) => this.refreshOne(key)));
          this.rebuild();
          this.render();
        }
      } finally {
        this.refreshing = false;
      }
    })();
  }

  private async refreshOne(key: string): Promise<void> {
    const sent = ++this.sent;
    // An answer older than what is shown for this flag, by the full read or its own.
    const outdated = (): boolean => sent < Math.max(this.baseline, this.stamps.get(key) ?? 0);
    const flagPath = `${path.flags(this.environment)}/${encodeURIComponent(key)}`;
    const audit = `/api/v1/audit?environment=${encodeURIComponent(this.environment)}&flag=${encodeURIComponent(key)}&limit=1`;
    try {
      const [entry, page] = await Promise.all([
        getJson<FlagEntry>(flagPath).catch((failure: unknown) => {
          if (failure instanceof ApiError && failure.status === 404) {
            return null;
          }
          throw failure;
        }),
        getJson<AuditPage>(audit).catch(() => ({ entries: [], next: null })),
      ]);
      if (outdated()) {
        return;
      }
      if (entry === null) {
        this.stamps.set(key, sent);
        this.entries.delete(key);
        this.ramps.delete(key);
        this.staleRamps.delete(key);
        return;
      }
      const old = this.entries.get(key);
      if (old !== undefined && old.revision > entry.revision) {
        return;
      }
      this.stamps.set(key, sent);
      this.entries.set(key, entry);
      const newest = page.entries.find(concernsFlag);
      const oldLast = this.last.get(key);
      if (newest !== undefined && (oldLast === undefined || newest.id >= oldLast.id)) {
        this.last.set(key, newest);
      }
      if (entry.flag["ramp"] === undefined) {
        this.ramps.delete(key);
        this.staleRamps.delete(key);
      } else {
        const ramp = await getJson<RampSummary>(`${flagPath}/ramp`).catch((failure: unknown) =>
          failure instanceof ApiError && failure.status === 404 ? null : undefined,
        );
        if (outdated()) {
          return;
        }
        if (ramp === undefined) {
          // Not read: the badge shown stays, said to be possibly stale.
          this.staleRamps.add(key);
        } else if (ramp === null) {
          this.ramps.delete(key);
          this.staleRamps.delete(key);
        } else {
          this.ramps.set(key, ramp);
          this.staleRamps.delete(key);
        }
      }
    } catch {
      // The next change or reconnect reads it again; the list keeps what it showed.
    }
  }

  private matches(): Row[] {
    const query = this.search.value.trim().toLowerCase();
    const state = this.state.value;
    const ramp = this.rampFilter.value;
    return this.rows.filter((row) => {
      if (state === "on" && row.killed) return false;
      if (state === "killed" && !row.killed) return false;
      if (ramp === "any" && row.ramp === "") return false;
      if (ramp === "none" && row.ramp !== "") return false;
      if (ramp !== "" && ramp !== "any" && ramp !== "none" && row.ramp !== ramp) return false;
      return query === "" || row.key.toLowerCase().includes(query) || row.description.toLowerCase().includes(query);
    });
  }

  private render(): void {
    const shown = this.matches();
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    this.page = Math.min(this.page, pages - 1);
    const total = this.rows.length;
    const filtered = shown.length !== total;
    const first = this.page * PAGE_SIZE;
    const slice = shown.slice(first, first + PAGE_SIZE);
    this.status.textContent =
      `${total.toLocaleString("en")} flag${total === 1 ? "" : "s"} in ${this.environment}` +
      (filtered ? `, ${shown.length.toLocaleString("en")} match${shown.length === 1 ? "es" : ""}` : "") +
      (shown.length > PAGE_SIZE ? `; showing ${(first + 1).toLocaleString("en")}–${(first + slice.length).toLocaleString("en")}` : "");
    if (this.rampsFailed !== null) {
      this.status.textContent += `. The ramps could not be read (${this.rampsFailed}): the ramp badges may be stale.`;
    } else if (this.staleRamps.size > 0) {
      this.status.textContent += `. The ramp of ${[...this.staleRamps].join(", ")} could not be read: its badge may be stale.`;
    }
    this.drawPager(pages);
    // A live change redraws the rows: the keyboard stays on the row it was on.
    const active = document.activeElement;
    const focused = active instanceof HTMLElement && this.body.contains(active) ? active.closest("tr")?.getAttribute("data-flag") ?? null : null;
    if (shown.length === 0) {
      replaceChildren(this.body, el("p", {}, total === 0 ? "No flags yet." : "No flag matches."));
      return;
    }
    const tbody = el("tbody");
    for (const row of slice) {
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
          el("td", {}, row.badge === "" ? "—" : el("span", { class: `badge ramp-${row.ramp}` }, row.badge)),
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
            el("th", { scope: "col" }, "Ramp"),
            el("th", { scope: "col" }, "Last change"),
          ),
        ),
        tbody,
      ),
    );
    if (focused !== null) {
      for (const line of tbody.rows) {
        if (line.getAttribute("data-flag") === focused) {
          line.querySelector("a")?.focus();
        }
      }
    }
  }

  private drawPager(pages: number): void {
    // The buttons stay the same elements from one drawing to the next, so that a live
    // change redrawing the rows leaves the keyboard where it was.
    this.pager.hidden = pages <= 1;
    this.previous.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
    this.position.textContent = ` Page ${this.page + 1} of ${pages} `;
  }
}

function rampsPath(environment: string): string {
  return `/api/v1/environments/${encodeURIComponent(environment)}/ramps`;
}
