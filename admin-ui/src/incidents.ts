// The Incidents screen: every kill (and pause on a regression) the guard recorded, newest
// first; and one incident as a page to paste into a postmortem — what was killed, when, by
// which guard, the statistic against its boundary, every guard's evidence, and the ramp's
// timeline.

import { type FlagEntry, getJson, path } from "./api";
import { type Child, el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import {
  type AuditRecord,
  type Charts,
  type Evidence,
  type GuardDefinition,
  type History,
  type Verdict,
  decisionList,
  decisionsOf,
  destroyCharts,
  effectSentence,
  formatCount,
  formatPercent,
  guardTile,
  looksOf,
  verdictWord,
} from "./evidence";
import { auditPath, rampPath } from "./ramp";
import { describe, formatTime } from "./send";
import type { Context, Screen } from "./screen";

export interface GuardReport {
  metric: string;
  critical: boolean;
  verdict?: Verdict;
  error?: string;
  evidence?: Evidence;
}

export interface Incident {
  id: number;
  time: string;
  environment: string;
  flag: string;
  generation: number;
  action: "kill" | "pause" | string;
  stage: number;
  percentage: number;
  reason: string;
  evidence: GuardReport[];
}

interface IncidentPage {
  incidents: Incident[];
  next?: number;
}

const PAGE = 50;

function what(incident: Incident): string {
  return incident.action === "kill" ? "Killed" : incident.action === "pause" ? "Paused" : incident.action;
}

/** The guards whose regression made the incident. */
function firing(incident: Incident): GuardReport[] {
  return incident.evidence.filter((guard) => guard.verdict === "REGRESSION");
}

export function openIncidents(_context: Context): Screen {
  return new IncidentsScreen();
}

class IncidentsScreen implements Screen {
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly status: HTMLElement;
  private incidents: Incident[] = [];
  private next: number | undefined;
  private loading = false;
  private again = false;

  constructor() {
    this.status = el("p", { role: "status" }, "Loading…");
    this.body = el("div");
    this.root = el(
      "section",
      { "aria-labelledby": "incidents-heading" },
      el("h1", { id: "incidents-heading" }, "Incidents"),
      el("p", { class: "description" }, "Every kill, and every pause on a regression, that a ramp's guard made, in every environment."),
      this.status,
      this.body,
    );
  }

  event(event: LiveEvent): void {
    if (event.event === "incident" || event.event === "reset") {
      void this.load();
    }
  }

  async load(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      do {
        this.again = false;
        const page = await getJson<IncidentPage>(`/api/v1/incidents?limit=${PAGE}`);
        this.incidents = page.incidents;
        this.next = page.next;
        this.render();
      } while (this.again);
    } catch (failure) {
      this.status.textContent = `Could not load the incidents: ${describe(failure)}`;
    } finally {
      this.loading = false;
    }
  }

  private async more(button: HTMLButtonElement): Promise<void> {
    if (this.next === undefined) {
      return;
    }
    button.disabled = true;
    try {
      const page = await getJson<IncidentPage>(`/api/v1/incidents?limit=${PAGE}&before=${this.next}`);
      this.incidents = this.incidents.concat(page.incidents);
      this.next = page.next;
      this.render();
    } catch (failure) {
      button.disabled = false;
      this.status.textContent = `Could not load older incidents: ${describe(failure)}`;
    }
  }

  private render(): void {
    const count = this.incidents.length;
    this.status.textContent = count === 0 ? "No incidents: no guard has killed or paused a ramp." : `${count}${this.next === undefined ? "" : "+"} incident${count === 1 ? "" : "s"}, newest first`;
    if (count === 0) {
      replaceChildren(this.body);
      return;
    }
    const older = this.next === undefined ? null : el("button", { type: "button" }, "Older incidents");
    older?.addEventListener("click", () => void this.more(older));
    replaceChildren(
      this.body,
      el(
        "table",
        { class: "flags incidents" },
        el("caption", {}, "Incidents, newest first"),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, "Flag"),
            el("th", { scope: "col" }, "Environment"),
            el("th", { scope: "col" }, "What"),
            el("th", { scope: "col" }, "When"),
            el("th", { scope: "col" }, "Stage"),
            el("th", { scope: "col" }, "Guard"),
          ),
        ),
        el(
          "tbody",
          {},
          ...this.incidents.map((incident) =>
            el(
              "tr",
              { "data-incident": String(incident.id) },
              el("th", { scope: "row" }, el("a", { href: `#/incidents/${incident.id}` }, incident.flag)),
              el("td", {}, incident.environment),
              el("td", { class: incident.action === "kill" ? "killed" : "" }, what(incident)),
              el("td", {}, el("time", { datetime: incident.time }, formatTime(incident.time))),
              el("td", {}, `stage ${incident.stage + 1} at ${formatPercent(incident.percentage)}`),
              el("td", {}, firing(incident).map((guard) => guard.metric).join(", ") || "—"),
            ),
          ),
        ),
      ),
      older,
    );
  }
}

/** `#/incidents/<id>`: one incident, laid out to be read, printed or pasted. */
export function openIncident(context: Context): Screen {
  const id = context.rest[0] ?? "";
  const charts: Charts = [];
  const root = el("article", { class: "incident" }, el("h1", {}, `Incident ${id}`), el("p", { role: "status" }, "Loading…"));
  let closed = false;
  const load = async (): Promise<void> => {
    let incident: Incident;
    try {
      incident = await getJson<Incident>(`/api/v1/incidents/${encodeURIComponent(id)}`);
    } catch (failure) {
      if (!closed) {
        replaceChildren(root, el("h1", {}, `Incident ${id}`), el("p", { role: "alert" }, `Could not read the incident: ${describe(failure)}`), back());
      }
      return;
    }
    // What the flag's ramp says of its guards (which way is better), its decisions, and the
    // look history while it is still this generation's: each only adds to the page.
    const [flag, audit, history] = await Promise.all([
      getJson<FlagEntry>(`${path.flags(incident.environment)}/${encodeURIComponent(incident.flag)}`).catch(() => null),
      getJson<{ entries: AuditRecord[] }>(auditPath(incident.environment, incident.flag)).catch(() => ({ entries: [] })),
      getJson<History>(`${rampPath(incident.environment, incident.flag)}/history?generation=${incident.generation}`).catch(() => null),
    ]);
    if (closed) {
      return;
    }
    destroyCharts(charts);
    render(root, incident, flag, audit.entries, history !== null && history.generation === incident.generation ? history : null, charts, context.environment);
  };
  return {
    root,
    load,
    close() {
      closed = true;
      destroyCharts(charts);
    },
  };
}

function back(): HTMLElement {
  return el("p", {}, el("a", { href: "#/incidents" }, "Back to the incidents"));
}

function render(
  root: HTMLElement,
  incident: Incident,
  flag: FlagEntry | null,
  audit: AuditRecord[],
  history: History | null,
  charts: Charts,
  shown: string,
): void {
  const ramp = (flag?.flag["ramp"] ?? null) as { stages?: number[]; guards?: GuardDefinition[] } | null;
  const stages = Array.isArray(ramp?.stages) ? ramp.stages : [];
  const definitions = Array.isArray(ramp?.guards) ? ramp.guards : [];
  const definition = (metric: string): GuardDefinition | null => definitions.find((guard) => guard.metric === metric) ?? null;
  const fired = firing(incident);
  const stage = `stage ${incident.stage + 1}${stages.length > 0 ? ` of ${stages.length}` : ""} (${formatPercent(incident.percentage)})`;
  const done =
    incident.action === "kill"
      ? "set the rollout to 0% and turned the kill switch off"
      : "paused the ramp at its percentage";
  const summary = `${formatTime(incident.time)}: the ramp guard ${done} for ${incident.flag} in ${incident.environment}, at ${stage} of generation ${incident.generation}, on a regression of ${fired.map((guard) => guard.metric).join(" and ") || "a guard"}.`;
  const copy = el("button", { type: "button" }, "Copy as text");
  const copied = el("span", { role: "status" });
  copy.addEventListener("click", () => {
    // innerText reads what the page shows, laid out as lines: what a postmortem wants.
    navigator.clipboard
      .writeText(body.innerText)
      .then(() => {
        copied.textContent = " Copied.";
      })
      .catch(() => {
        copied.textContent = " Could not copy: select the page and copy it.";
      });
  });
  const body = el(
    "div",
    {},
    el("h1", {}, `Incident ${incident.id}: ${incident.flag} ${what(incident).toLowerCase()}`),
    el("p", { class: "summary" }, summary),
    el(
      "dl",
      { class: "incident-facts" },
      ...facts([
        [
          "Flag",
          el(
            "span",
            {},
            el("a", { href: `#/flags/${encodeURIComponent(incident.flag)}` }, incident.flag),
            // The flag page shows the environment chosen in the header.
            incident.environment === shown ? null : ` (choose the environment ${incident.environment} above to open its page there)`,
          ),
        ],
        ["Environment", incident.environment],
        ["What", incident.action === "kill" ? "Killed: rollout 0%, kill switch off" : "Paused on a regression"],
        ["When", el("time", { datetime: incident.time }, formatTime(incident.time))],
        ["Where", `${stage}, generation ${incident.generation}`],
        ["By the guard", fired.map((guard) => `${guard.metric}${guard.critical ? " (critical)" : ""}`).join(", ") || "—"],
        ...fired.map((guard): [string, Child] => [`${guard.metric}: statistic`, statisticSentence(guard)]),
        ...fired.map((guard): [string, Child] => [`${guard.metric}: effect`, guard.evidence === undefined ? "—" : effectSentence(guard.evidence, definition(guard.metric))]),
        ["The controller's reason", el("span", { class: "reason" }, incident.reason)],
      ]),
    ),
    el("h2", {}, "Every guard's evidence"),
    evidenceTable(incident),
    el(
      "div",
      { class: "guards" },
      ...incident.evidence.map((guard) =>
        guardTile(
          {
            metric: guard.metric,
            definition: definition(guard.metric) ?? { metric: guard.metric, critical: guard.critical },
            verdict: guard.verdict ?? null,
            evidence: guard.evidence ?? null,
            error: guard.error ?? null,
            stage: null,
            looks: looksOf(history, guard.metric),
            killedBy: incident.action === "kill" && guard.verdict === "REGRESSION",
          },
          charts,
        ),
      ),
    ),
    el("h2", {}, "Timeline of the ramp"),
    decisionList(decisionsOf(audit, incident.generation), stages),
  );
  replaceChildren(root, body, el("p", {}, copy, copied), back());
}

function facts(pairs: [string, Child][]): Node[] {
  return pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]);
}

function statisticSentence(guard: GuardReport): string {
  const evidence = guard.evidence;
  if (evidence === undefined) {
    return guard.error ?? "—";
  }
  const boundary = evidence.threshold !== null && evidence.threshold > 0 ? Math.log(1 / evidence.threshold) : null;
  const number = (value: number | null): string => (value === null || !Number.isFinite(value) ? "—" : String(Number(value.toPrecision(3))));
  const p = evidence.p_value === null ? "—" : evidence.p_value < 0.0001 ? evidence.p_value.toExponential(1) : number(evidence.p_value);
  return `sequential p = ${p}, at or below the threshold ${number(evidence.threshold)} (alpha over the guards); ln Λ = ${number(evidence.log_lambda)} reached the boundary ln(1/threshold) = ${number(boundary)}; z = ${number(evidence.z)}, with ${formatCount(evidence.n_treatment)} treatment and ${formatCount(evidence.n_control)} control observations.`;
}

/** Every guard in one table: pasted into a document, it keeps its rows and columns. */
function evidenceTable(incident: Incident): HTMLElement {
  const number = (value: number | null | undefined, digits = 3): string =>
    value === null || value === undefined || !Number.isFinite(value) ? "—" : String(Number(value.toPrecision(digits)));
  return el(
    "table",
    { class: "flags evidence" },
    el("caption", {}, "Evidence at the incident"),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ...["Guard", "Verdict", "Treatment n", "Control n", "Treatment", "Control", "Effect (treatment − control)", "95% interval", "Tolerance", "p", "Threshold"].map((name) =>
          el("th", { scope: "col" }, name),
        ),
      ),
    ),
    el(
      "tbody",
      {},
      ...incident.evidence.map((guard) => {
        const evidence = guard.evidence;
        if (evidence === undefined) {
          return el("tr", {}, el("th", { scope: "row" }, guard.metric), el("td", { colspan: "10" }, guard.error ?? "no evidence"));
        }
        const rates = evidence.rate_treatment !== undefined;
        const level = (value: number | undefined): string => (value === undefined ? "—" : rates ? `${(value * 100).toFixed(2)}%` : number(value, 4));
        const relative = evidence.tolerance.kind === "relative";
        const amount = (value: number | null | undefined): string =>
          value === null || value === undefined ? "—" : relative ? `${(value * 100).toFixed(1)}%` : rates ? `${(value * 100).toFixed(2)} pp` : number(value);
        const effect = evidence.effect;
        return el(
          "tr",
          {},
          el("th", { scope: "row" }, guard.metric),
          el("td", { class: guard.verdict === "REGRESSION" ? "killed" : "" }, verdictWord(guard.verdict)),
          el("td", { class: "number" }, formatCount(evidence.n_treatment)),
          el("td", { class: "number" }, formatCount(evidence.n_control)),
          el("td", { class: "number" }, level(rates ? evidence.rate_treatment : evidence.median_treatment)),
          el("td", { class: "number" }, level(rates ? evidence.rate_control : evidence.median_control)),
          el("td", { class: "number" }, amount(effect?.estimate)),
          el("td", { class: "number" }, effect === null ? "—" : `${amount(effect.ci[0])} to ${amount(effect.ci[1])}`),
          el("td", { class: "number" }, amount(evidence.tolerance.value)),
          el("td", { class: "number" }, evidence.p_value === null ? "—" : evidence.p_value < 0.0001 ? evidence.p_value.toExponential(1) : number(evidence.p_value, 2)),
          el("td", { class: "number" }, number(evidence.threshold, 2)),
        );
      }),
    ),
  );
}
