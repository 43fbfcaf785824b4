// The ramp section of a flag page: where the ramp is and why it waits, its stages as a
// timeline, the controls (each confirmed in a dialog), and a tile per guard with the
// evidence. Ramp, change and incident events read it again; while the ramp runs, its counts
// are read every few seconds too, since observations arriving make no event.

import { ApiError, type FlagEntry, getJson, path } from "./api";
import { type Child, el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import {
  type AuditRecord,
  type Charts,
  type Evidence,
  type GuardDefinition,
  type History,
  type StageNumbers,
  type Verdict,
  decisionList,
  decisionsOf,
  destroyCharts,
  formatCount,
  formatPercent,
  guardTile,
  looksOf,
  stageEntries,
  waitWords,
} from "./evidence";
import { type Context, type Screen, changeOf } from "./screen";
import { describe, formatTime, send } from "./send";

export type RampState = "pending" | "running" | "paused" | "completed" | "killed" | "aborted";

export interface GuardStatus extends GuardDefinition, StageNumbers {
  verdict: Verdict | null;
  evidence: Evidence | null;
  error: string | null;
}

/** The look's sample-ratio check: do the cohorts report in the ratio their bands imply? */
export interface SampleRatio {
  verdict: "OK" | "MISMATCH";
  metric: string;
  /** Distinct reporting units, or one guard metric's observations; absent from older servers. */
  counts?: "units" | "observations";
  treatment: number;
  control: number;
  expected_ratio: number | null;
  observed_ratio: number | null;
  p_value: number;
}

export interface RampStatus {
  environment: string;
  flag: string;
  generation: number;
  status: RampState;
  pause_reason?: "inconclusive" | "regression" | "manual" | "invalid_config" | "sample_ratio_mismatch";
  stage: number;
  stages: number[];
  percentage: number;
  started_at: string | null;
  stage_started_at: string | null;
  counts_from: string | null;
  ended_at: string | null;
  hold?: "warm_up" | "min_duration" | "inconclusive" | "stage_samples" | "sample_ratio" | "no_guards" | "data_error" | "no_data";
  alert?: string;
  srm?: SampleRatio;
  last_observation_at: string | null;
  control: "rest" | "equal" | number;
  guards: GuardStatus[];
  kill?: { incident: number; revision: number | null; time: string };
  reach?: { active: number; fetched: number };
  applied: boolean;
}

type Operation = "start" | "pause" | "resume" | "advance" | "abort";

/** The controls, in the order they are shown, and the states each one is allowed from. */
const OPERATIONS: readonly { operation: Operation; name: string; from: readonly RampState[] }[] = [
  { operation: "start", name: "Start ramp", from: ["pending", "completed", "killed", "aborted"] },
  { operation: "pause", name: "Pause ramp", from: ["running"] },
  { operation: "resume", name: "Resume ramp", from: ["paused"] },
  { operation: "advance", name: "Advance stage", from: ["running", "paused"] },
  { operation: "abort", name: "Abort ramp", from: ["pending", "running", "paused"] },
];

/** How often a running ramp's status is read again. */
const REFRESH_MS = 5000;
/** How often that also reads the look history, which keeps one look a minute. */
const HISTORY_MS = 60_000;

export function rampPath(environment: string, key: string): string {
  return `${path.flags(environment)}/${encodeURIComponent(key)}/ramp`;
}

export function auditPath(environment: string, key: string): string {
  return `/api/v1/audit?environment=${encodeURIComponent(environment)}&flag=${encodeURIComponent(key)}&limit=500`;
}

/** The flag's ramp, shown inside its page; the page passes on its load and live events. */
export function openRamp(context: Context, key: string): Screen {
  return new RampSection(context.environment, key);
}

/** What a ramp's state means, in a sentence. */
export function stateWords(status: RampStatus): string {
  const stage = `stage ${status.stage + 1} of ${status.stages.length} (${formatPercent(status.stages[status.stage])})`;
  switch (status.status) {
    case "pending":
      return `Not started. Start ramp sets the flag to the first stage, ${formatPercent(status.stages[0])}.`;
    case "running":
      return `Running at ${stage} since ${formatTime(status.stage_started_at)}.`;
    case "paused":
      return `Paused at ${stage}: ${pauseWords(status)}`;
    case "completed":
      return `Completed at ${formatTime(status.ended_at)}: the flag serves ${formatPercent(status.percentage)}.`;
    case "killed":
      return `Killed by the guard at ${formatTime(status.kill?.time ?? status.ended_at)} in ${stage}: rollout 0%, kill switch off.`;
    case "aborted":
      return `Aborted at ${formatTime(status.ended_at)}: rollout back to 0%.`;
  }
}

function pauseWords(status: RampStatus): string {
  switch (status.pause_reason) {
    case "manual":
      return "paused by hand. The guards keep watching and a regression still kills.";
    case "regression":
      return "a guard regressed and the ramp pauses on a regression. Resume, advance with a reason, or abort.";
    case "inconclusive":
      return "still undecided at the stage's longest wait. Resume for another wait, advance with a reason, or abort.";
    case "invalid_config":
      return "the ramp block no longer fits the ramp's state. Fix the flag's ramp block, or abort.";
    case "sample_ratio_mismatch":
      return "the cohorts report in a ratio their bands cannot explain, so the guards cannot be trusted on these data. Find why reports are lost or doubled, then abort and start again.";
    default:
      return "paused.";
  }
}

/** Who the treatment is compared with in this generation, from the ramp's status. */
export function controlWords(control: string | number | undefined): string {
  if (control === undefined || control === "rest") {
    return "Compared with every unit outside the treatment (control: rest).";
  }
  if (control === "equal") {
    return "Compared with as many units as the treatment (control: equal).";
  }
  return `Compared with ${control} times as many units as the treatment, at most all the others (control: ${control}).`;
}

/** The sample-ratio check in a sentence, or null before the first look. */
export function sampleRatioWords(status: RampStatus): string | null {
  const srm = status.srm;
  if (srm === undefined) {
    return null;
  }
  const ratio = (value: number | null): string => (value === null ? "—" : value.toFixed(4));
  const counted = srm.counts === "units" ? "distinct units" : `observations of ${srm.metric}`;
  const counts = `${srm.treatment.toLocaleString("en-US")} treatment and ${srm.control.toLocaleString("en-US")} control ${counted}`;
  const ratios = `treatment : control ${ratio(srm.observed_ratio)}, ${ratio(srm.expected_ratio)} expected`;
  if (srm.verdict === "MISMATCH") {
    return `Sample ratio mismatch: ${counts}, ${ratios} (p = ${srm.p_value.toPrecision(2)}).`;
  }
  return status.hold === "sample_ratio"
    ? `Sample ratio in doubt: this stage's counts lean towards a mismatch. So far: ${counts}, ${ratios}.`
    : `Sample ratio as expected: ${counts}, ${ratios}.`;
}

/** Why a running ramp does not move, in words: what it waits for, and how long that takes. */
export function holdWords(status: RampStatus, now = Date.now()): string | null {
  if (status.status !== "running") {
    return null;
  }
  switch (status.hold) {
    case "warm_up": {
      const from = status.counts_from === null ? Number.NaN : new Date(status.counts_from).getTime();
      const seconds = Math.max(0, Math.ceil((from - now) / 1000));
      return `Warming up: observations count from ${formatTime(status.counts_from)}${Number.isFinite(seconds) ? ` (in ${seconds} s)` : ""}.`;
    }
    case "min_duration": {
      const waiting = waitingWords(status);
      return `The stage has not lasted its minimum duration yet: it cannot advance before, whatever the guards say.${waiting === null ? "" : ` ${waiting}`}`;
    }
    case "stage_samples":
    case "inconclusive":
      return waitingWords(status) ?? (status.hold === "inconclusive" ? "The guards cannot decide yet." : "Waiting for this stage's own samples.");
    case "sample_ratio":
      return "Every guard passes, but the cohorts' counts lean towards a sample-ratio mismatch: the stage waits until they agree with the bands again, or pauses once they prove the mismatch.";
    case "no_guards":
      return "No guards: the ramp moves only by hand (Advance stage).";
    case "no_data":
      return `No observations since ${formatTime(status.last_observation_at ?? status.counts_from)}: check that the apps evaluate this flag and report its guard metrics.`;
    case "data_error": {
      const error = status.guards.find((guard) => guard.error !== null)?.error;
      return `The observations could not be judged${error === undefined || error === null ? "" : `: ${error}`}.`;
    }
    default:
      return null;
  }
}

/** The guard furthest from a decision: how many more observations, and how long at the current rate. */
function waitingWords(status: RampStatus): string | null {
  const waiting = status.guards
    .filter((guard) => guard.more_observations !== null && guard.more_observations > 0)
    .sort((a, b) => (b.more_minutes ?? Infinity) - (a.more_minutes ?? Infinity) || (b.more_observations ?? 0) - (a.more_observations ?? 0));
  const longest = waiting[0];
  if (longest === undefined || longest.more_observations === null) {
    return null;
  }
  const whose = status.guards.length > 1 ? ` (${longest.metric})` : "";
  const words = waitWords(longest.more_observations, longest.more_minutes);
  return `${words.charAt(0).toUpperCase()}${words.slice(1)}${whose}.`;
}

class RampSection implements Screen {
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly charts: Charts = [];
  private status: RampStatus | null = null;
  private dialog: HTMLDialogElement | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private loading = false;
  private again = false;
  private closed = false;
  /** The decisions list stays open across the redraws of a running ramp. */
  private decisionsOpen = false;
  /** What the timer's reads keep from the last full read: only events change them. */
  private history: History | null = null;
  private historyAt = 0;
  private audit: AuditRecord[] = [];
  private flag: FlagEntry | null = null;
  /** A full read is owed: an event, a reconnect or the first load asked for one. */
  private full = true;

  constructor(
    private readonly environment: string,
    private readonly key: string,
  ) {
    this.body = el("div", { class: "ramp-body" }, el("p", { role: "status" }, "Loading the ramp…"));
    this.root = el("section", { "aria-labelledby": "ramp-heading", class: "ramp" }, el("h2", { id: "ramp-heading" }, "Ramp"), this.body);
  }

  event(event: LiveEvent): void {
    const data = (typeof event.data === "object" && event.data !== null ? event.data : {}) as { environment?: unknown; flag?: unknown };
    const change = changeOf(event);
    const ours = data.environment === this.environment && data.flag === this.key;
    if (
      event.event === "reset" ||
      ((event.event === "ramp" || event.event === "incident") && ours) ||
      (change !== null && change.environment === this.environment && (change.flags === null || change.flags.includes(this.key)))
    ) {
      void this.load();
    }
  }

  close(): void {
    this.closed = true;
    this.stopTimer();
    destroyCharts(this.charts);
    this.dialog?.remove();
  }

  /**
   * Reads the ramp afresh; calls that arrive during a load cause one more load after it. The
   * timer's reads (`full` false) read the status alone, and the history once a minute: a
   * long ramp's history is large, and its decisions and its flag change only with an event.
   */
  async load(full = true): Promise<void> {
    this.full ||= full;
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      do {
        this.again = false;
        const whole = this.full;
        this.full = false;
        await this.read(whole);
      } while (this.again && !this.closed);
    } finally {
      this.loading = false;
    }
  }

  private async read(full: boolean): Promise<void> {
    this.stopTimer();
    const withHistory = full || Date.now() - this.historyAt >= HISTORY_MS;
    // All at once: the history, the audit log and the flag add charts and times, and the
    // ramp shows without them.
    const [status, history, audit, flag] = await Promise.all([
      getJson<RampStatus>(rampPath(this.environment, this.key)).catch((failure: unknown) => failure),
      withHistory ? getJson<History>(`${rampPath(this.environment, this.key)}/history`).catch(() => null) : Promise.resolve(this.history),
      full
        ? getJson<{ entries: AuditRecord[] }>(auditPath(this.environment, this.key)).then((page) => page.entries, () => [])
        : Promise.resolve(this.audit),
      full ? getJson<FlagEntry>(`${path.flags(this.environment)}/${encodeURIComponent(this.key)}`).catch(() => null) : Promise.resolve(this.flag),
    ]);
    if (this.closed) {
      return;
    }
    if (withHistory) {
      this.historyAt = Date.now();
    }
    this.history = history;
    this.audit = audit;
    this.flag = flag;
    if (!isStatus(status)) {
      destroyCharts(this.charts);
      if (status instanceof ApiError && status.status === 404) {
        replaceChildren(this.body, el("p", {}, "This flag has no ramp. Give it a ramp block to walk its rollout through stages."));
      } else {
        replaceChildren(this.body, el("p", { role: "alert" }, `Could not read the ramp: ${describe(status)}`));
      }
      return;
    }
    this.status = status;
    this.render(status, history !== null && history.generation === status.generation ? history : null, audit, flag);
    if (status.status === "running" || status.status === "paused") {
      this.timer = setTimeout(() => void this.load(false), REFRESH_MS);
    }
  }

  private stopTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private render(status: RampStatus, history: History | null, audit: AuditRecord[], flag: FlagEntry | null): void {
    destroyCharts(this.charts);
    const decisions = decisionsOf(audit, status.generation);
    const hold = holdWords(status);
    const sampleRatio = sampleRatioWords(status);
    const stateClass = status.status === "killed" ? "killed" : status.status === "running" || status.status === "completed" ? "on" : "";
    // The redraw every few seconds replaces these elements: the one the keyboard was on
    // (a control, the decisions' summary) is found again by its key and focused.
    const active = document.activeElement;
    const focused = active instanceof HTMLElement && this.body.contains(active) ? active.getAttribute("data-focus") : null;
    const controls = OPERATIONS.filter(({ from }) => from.includes(status.status)).map(({ operation, name }) => {
      const button = el("button", { type: "button", "data-focus": `ramp-${operation}` }, name);
      button.addEventListener("click", () => this.confirm(operation, name));
      return button;
    });
    const details = el(
      "details",
      { class: "ramp-decisions", open: this.decisionsOpen ? "" : undefined },
      el("summary", { "data-focus": "ramp-decisions" }, `Decisions of generation ${status.generation} (${decisions.length})`),
      decisionList(decisions, status.stages),
    );
    details.addEventListener("toggle", () => {
      this.decisionsOpen = details.open;
    });
    const ramp = (flag?.flag["ramp"] ?? null) as { on_regression?: string } | null;
    replaceChildren(
      this.body,
      el(
        "p",
        { class: "ramp-state" },
        el("strong", { class: stateClass }, capitalise(status.status)),
        ` · generation ${status.generation} · ${formatPercent(status.percentage)} served`,
        status.applied ? null : " · applying the last decision to the flag…",
      ),
      el("p", {}, stateWords(status)),
      hold === null ? null : el("p", { class: status.hold === "no_data" ? "hold alert" : "hold", role: status.hold === "no_data" ? "alert" : "status" }, hold),
      sampleRatio === null ? null : el("p", { class: status.srm?.verdict === "MISMATCH" ? "srm alert" : "srm", role: status.srm?.verdict === "MISMATCH" ? "alert" : "status" }, sampleRatio),
      status.alert === undefined ? null : el("p", { class: "alert", role: "alert" }, status.alert),
      killLine(status),
      el("p", { class: "description" }, controlWords(status.control)),
      ramp?.on_regression === "pause" ? el("p", { class: "description" }, "On a regression this ramp pauses (critical guards still kill).") : null,
      controls.length === 0 ? null : el("div", { class: "ramp-controls", role: "group", "aria-label": "Ramp controls" }, ...controls),
      el("h3", {}, "Stages"),
      stageTimeline(status, decisions),
      details,
      el("h3", {}, "Guards"),
      status.guards.length === 0
        ? el("p", {}, "This ramp has no guards: nothing judges it, and it moves only by hand.")
        : el(
            "div",
            { class: "guards" },
            ...status.guards.map((guard) =>
              guardTile(
                {
                  metric: guard.metric,
                  definition: guard,
                  verdict: guard.verdict,
                  evidence: guard.evidence,
                  error: guard.error,
                  stage: status.status === "running" || status.status === "paused" ? guard : null,
                  looks: looksOf(history, guard.metric),
                  killedBy: status.status === "killed" && guard.verdict === "REGRESSION",
                },
                this.charts,
                "h4",
              ),
            ),
          ),
    );
    if (focused !== null) {
      for (const candidate of this.body.querySelectorAll<HTMLElement>("[data-focus]")) {
        if (candidate.getAttribute("data-focus") === focused) {
          candidate.focus();
          break;
        }
      }
    }
  }

  /** Asks in a dialog before the operation; a reason is asked for, and needed to advance. */
  private confirm(operation: Operation, name: string): void {
    const status = this.status;
    if (status === null) {
      return;
    }
    this.dialog?.remove();
    const needsReason = operation === "advance";
    // aria-required rather than required: the dialog says why in its own words, where the
    // browser's validation bubble would say only that the field is empty.
    const reason = el("textarea", { id: "ramp-reason", rows: "3", maxlength: "1000", "aria-required": needsReason ? "true" : undefined });
    const error = el("p", { role: "alert", class: "error" });
    const verb = capitalise(operation);
    const go = el("button", { type: "submit" }, verb);
    const cancel = el("button", { type: "button" }, "Cancel");
    const form = el(
      "form",
      { method: "dialog" },
      el("h2", { id: "ramp-dialog-heading" }, `${name}?`),
      el("p", {}, consequence(operation, status)),
      el("label", { for: "ramp-reason" }, "Reason"),
      needsReason ? el("span", { class: "description" }, " (required)") : el("span", { class: "description" }, " (optional, kept in the audit log)"),
      reason,
      error,
      el("p", { class: "dialog-buttons" }, go, " ", cancel),
    );
    const dialog = el("dialog", { "aria-labelledby": "ramp-dialog-heading", class: "ramp-dialog" }, form);
    this.dialog = dialog;
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (this.dialog === dialog) {
        this.dialog = null;
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = reason.value.trim();
      if (needsReason && text === "") {
        error.textContent = "Advancing by hand needs a reason: say why the evidence is not needed.";
        reason.focus();
        return;
      }
      go.disabled = true;
      error.textContent = "";
      send<RampStatus>("POST", `${rampPath(this.environment, this.key)}/${operation}`, text === "" ? {} : { reason: text })
        .then(() => {
          dialog.close();
          return this.load();
        })
        .catch((failure: unknown) => {
          go.disabled = false;
          error.textContent = `${name} was refused: ${describe(failure)}`;
        });
    });
    // In the body, not the section: the flag page redraws itself on every change of the flag,
    // and a dialog taken out of the page would stop being modal.
    document.body.appendChild(dialog);
    dialog.showModal();
    reason.focus();
  }
}

function isStatus(value: unknown): value is RampStatus {
  return typeof value === "object" && value !== null && !(value instanceof Error) && "status" in value && "stages" in value;
}

function capitalise(text: string): string {
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}

function consequence(operation: Operation, status: RampStatus): string {
  const next = status.stages[status.stage + 1];
  switch (operation) {
    case "start":
      return status.status === "pending"
        ? `The flag goes to the first stage, ${formatPercent(status.stages[0])}, at once, and the guards start watching.`
        : `A new generation starts at ${formatPercent(status.stages[0])} with no data; the kill switch is turned back on.`;
    case "pause":
      return `The flag stays at ${formatPercent(status.percentage)}. The guards keep watching and a regression still kills.`;
    case "resume":
      return "The ramp runs again and the stage's longest wait counts afresh.";
    case "advance":
      return next === undefined
        ? "The ramp completes now at its last stage, whatever the guards say."
        : `The flag goes to ${formatPercent(next)} now, whatever the guards say.`;
    case "abort":
      return "The rollout goes back to 0% and the ramp ends. No incident is recorded.";
  }
}

function killLine(status: RampStatus): HTMLElement | null {
  if (status.kill === undefined) {
    return null;
  }
  const reach = status.reach;
  const share = reach === undefined || reach.active === 0 ? "" : ` (${Math.round((100 * reach.fetched) / reach.active)}%)`;
  return el(
    "div",
    { class: "kill" },
    el(
      "p",
      {},
      el("a", { href: `#/incidents/${status.kill.incident}` }, `Incident ${status.kill.incident}`),
      " keeps every guard's evidence at the kill.",
    ),
    el(
      "p",
      { class: "reach" },
      "Kill reach: ",
      reach === undefined
        ? "the kill is not committed yet."
        : reach.active === 0
          ? "no instance has fetched flags in the last hour."
          : `${formatCount(reach.fetched)} of ${formatCount(reach.active)} instances active in the last hour have fetched the kill${share}.`,
      reach === undefined || reach.active === 0
        ? null
        : el("meter", { min: "0", max: String(reach.active), value: String(reach.fetched), "aria-label": "Share of instances that fetched the kill" }),
    ),
  );
}

/** The stages in order: when each was entered and left, and which one the ramp is at. */
function stageTimeline(status: RampStatus, decisions: AuditRecord[]): HTMLElement {
  const entered = stageEntries(decisions);
  const ended = status.status === "completed" || status.status === "killed" || status.status === "aborted";
  const items: Child[] = status.stages.map((percentage, index) => {
    const current = index === status.stage && status.status !== "pending";
    const from = entered.get(index) ?? (current ? status.stage_started_at : null);
    const to = entered.get(index + 1) ?? (current && ended ? status.ended_at : null);
    let when: string;
    if (status.status === "pending" || (index > status.stage && !entered.has(index))) {
      when = "not reached";
    } else if (from === null || from === undefined) {
      when = index < status.stage ? "passed" : "";
    } else if (to === null || to === undefined) {
      when = current && !ended ? `since ${formatTime(from)}` : `from ${formatTime(from)}`;
    } else {
      when = `${formatTime(from)} to ${formatTime(to)}`;
    }
    const mark = current ? (ended ? ` · ${status.status} here` : " · current") : "";
    return el(
      "li",
      { class: current ? `stage current ${status.status}` : index < status.stage ? "stage done" : "stage", "aria-current": current ? "step" : undefined },
      el("strong", {}, `Stage ${index + 1} · ${formatPercent(percentage)}`),
      mark,
      el("div", { class: "when" }, when),
    );
  });
  return el("ol", { class: "stages" }, ...items);
}

export type { AuditRecord, History };
