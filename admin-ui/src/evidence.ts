// What the ramp section and the incident page both show: a guard's evidence as a tile (its
// verdict, the effect with its interval against the tolerance as a picture, the samples per
// cohort, the sequential statistic against its boundary, and charts of both over the looks),
// and the ramp's timeline from the audit log.

import type uPlot from "uplot";

import { lazy } from "./chunk";
import { type Child, el } from "./dom";
import { describe, formatTime } from "./send";

export type Verdict = "REGRESSION" | "PASS" | "INCONCLUSIVE";

export interface Effect {
  /** Treatment − control, divided by the control's level when `relative`. */
  estimate: number;
  /** JSON has no infinity: an end the statistics could not bound is null. */
  ci: [number | null, number | null];
  confidence: number;
  relative: boolean;
  worse_upper_bound: number | null;
}

export interface Evidence {
  verdict: Verdict;
  burn_in_met: boolean;
  n_treatment: number;
  n_control: number;
  median_treatment?: number;
  median_control?: number;
  rate_treatment?: number;
  rate_control?: number;
  z: number | null;
  information: number | null;
  log_lambda: number | null;
  p_value: number | null;
  threshold: number | null;
  effect: Effect | null;
  tolerance: { kind: "absolute" | "relative"; value: number };
  more_observations: number | null;
}

/** A guard as the ramp block defines it. */
export interface GuardDefinition {
  metric: string;
  category?: string;
  kind?: "rate" | "value";
  better?: "lower" | "higher";
  tolerance?: number | string;
  min_samples?: number;
  critical?: boolean;
}

/** One guard at one look of the controller (`.../ramp/history`). */
export interface Look {
  time: number;
  stage: number;
  percentage: number;
  status: string;
  guards: { metric: string; evidence?: Evidence }[];
}

export interface History {
  generation: number;
  looks: Look[];
}

export interface AuditRecord {
  id: number;
  time: string;
  actor: string;
  action: string;
  target: string;
  reason?: string;
  after?: { generation?: number; status?: string; stage?: number; percentage?: number } | null;
}

const COUNT = new Intl.NumberFormat("en-US");

export function formatCount(count: number): string {
  return COUNT.format(Math.round(count));
}

/** "about 14 minutes", "about 3 hours": how long a wait is, in the words a person uses. */
export function formatMinutes(minutes: number): string {
  if (!Number.isFinite(minutes)) {
    return "an unknown time";
  }
  if (minutes < 1) {
    return "less than a minute";
  }
  if (minutes < 90) {
    const whole = Math.round(minutes);
    return `about ${whole} minute${whole === 1 ? "" : "s"}`;
  }
  if (minutes < 48 * 60) {
    const hours = Math.round(minutes / 60);
    return `about ${hours} hours`;
  }
  return `about ${Math.round(minutes / (24 * 60))} days`;
}

export function verdictWord(verdict: Verdict | null | undefined): string {
  switch (verdict) {
    case "REGRESSION":
      return "Regression";
    case "PASS":
      return "Pass";
    case "INCONCLUSIVE":
      return "Inconclusive";
    default:
      return "No look yet";
  }
}

/** +1 when a higher value is worse, −1 when a lower one is: effects are drawn as "how much worse". */
function orientation(definition: GuardDefinition | null): number {
  return definition?.better === "higher" ? -1 : 1;
}

/** An amount on the tolerance's scale: a share of the control, rate points, or the metric's unit. */
export function formatAmount(value: number, evidence: Evidence, definition: GuardDefinition | null, signed = true): string {
  const sign = signed && value > 0 ? "+" : "";
  if (evidence.tolerance.kind === "relative") {
    return `${sign}${(value * 100).toFixed(1)}%`;
  }
  if (definition?.kind === "rate" || evidence.rate_treatment !== undefined) {
    return `${sign}${(value * 100).toFixed(2)} pp`;
  }
  return `${sign}${Number(value.toPrecision(3))}`;
}

function formatProbability(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return "—";
  }
  return value < 0.0001 ? value.toExponential(1) : String(Number(value.toPrecision(2)));
}

function formatNumber(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return "—";
  }
  return String(Number(value.toPrecision(digits)));
}

/** The effect and its interval turned so that larger is worse, whichever way the metric is good. */
interface Worse {
  estimate: number;
  low: number | null;
  high: number | null;
  tolerance: number;
}

function worse(evidence: Evidence, definition: GuardDefinition | null): Worse | null {
  const effect = evidence.effect;
  if (effect === null || !Number.isFinite(effect.estimate)) {
    return null;
  }
  const turn = orientation(definition);
  const [first, second] = effect.ci;
  const ends = [first, second].map((end) => (end === null ? null : turn * end));
  const [a, b] = [ends[0] ?? null, ends[1] ?? null];
  // Turned around, the interval's ends swap; an unbounded end stays unbounded on its side.
  const low = turn > 0 ? a : b;
  const high = turn > 0 ? b : a;
  return { estimate: turn * effect.estimate, low, high, tolerance: evidence.tolerance.value };
}

/** The effect as a sentence: what a screen reader says for the picture, and what is printed. */
export function effectSentence(evidence: Evidence, definition: GuardDefinition | null): string {
  const turned = worse(evidence, definition);
  if (turned === null) {
    return "No effect estimated yet.";
  }
  const amount = (value: number | null): string => (value === null ? "unbounded" : formatAmount(value, evidence, definition));
  const size = formatAmount(Math.abs(turned.estimate), evidence, definition, false);
  const confidence = Math.round((evidence.effect?.confidence ?? 0.95) * 100);
  const lead = turned.estimate > 0 ? `Treatment worse by ${size}` : turned.estimate < 0 ? `Treatment better by ${size}` : "No difference";
  return `${lead}; how much worse, ${confidence}% interval ${amount(turned.low)} to ${amount(turned.high)}; ` +
    `the tolerance allows ${formatAmount(turned.tolerance, evidence, definition, false)} worse.`;
}

const SVG = "http://www.w3.org/2000/svg";

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/**
 * The effect's interval on a line from "better" to "worse", with the tolerance marked and
 * everything past it shaded: an interval wholly left of the line is a pass, a dot right of
 * it with the evidence strong enough is a regression.
 */
export function effectPicture(evidence: Evidence, definition: GuardDefinition | null): SVGSVGElement | null {
  const turned = worse(evidence, definition);
  if (turned === null) {
    return null;
  }
  const width = 340;
  const height = 80;
  const margin = 14;
  const tolerance = turned.tolerance;
  const known = [turned.estimate, turned.low, turned.high, 0, tolerance].filter((value): value is number => value !== null && Number.isFinite(value));
  let min = Math.min(...known);
  let max = Math.max(...known);
  const span = max - min || Math.abs(max) || 1;
  min -= span * 0.15;
  max += span * 0.15;
  const x = (value: number): number => margin + ((value - min) / (max - min)) * (width - 2 * margin);
  const clamp = (value: number | null, fallback: number): number => (value === null ? fallback : Math.min(Math.max(value, min), max));
  const axis = 44;
  const picture = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "effect-picture" });
  picture.setAttribute("aria-label", effectSentence(evidence, definition));
  picture.appendChild(svg("rect", { x: x(tolerance), y: 4, width: Math.max(0, width - margin - x(tolerance)), height: axis - 4, class: "beyond-tolerance" }));
  picture.appendChild(svg("line", { x1: margin, x2: width - margin, y1: axis, y2: axis, class: "axis" }));
  picture.appendChild(svg("line", { x1: x(0), x2: x(0), y1: 8, y2: axis + 4, class: "zero" }));
  picture.appendChild(svg("line", { x1: x(tolerance), x2: x(tolerance), y1: 4, y2: axis + 4, class: "tolerance" }));
  const low = clamp(turned.low, min);
  const high = clamp(turned.high, max);
  const tone = evidence.verdict.toLowerCase();
  picture.appendChild(svg("line", { x1: x(low), x2: x(high), y1: 24, y2: 24, class: `interval ${tone}` }));
  picture.appendChild(svg("circle", { cx: x(clamp(turned.estimate, min)), cy: 24, r: 5, class: `estimate ${tone}` }));
  picture.appendChild(svg("text", { x: x(0), y: axis + 14, "text-anchor": "middle" }, "0"));
  // A row of its own: a tolerance close to 0 would otherwise write over the 0.
  const anchor = x(tolerance) > width * 0.7 ? "end" : x(tolerance) < width * 0.3 ? "start" : "middle";
  picture.appendChild(svg("text", { x: x(tolerance), y: axis + 28, "text-anchor": anchor, class: "tolerance-label" }, `tolerance ${formatAmount(tolerance, evidence, definition, false)}`));
  picture.appendChild(svg("text", { x: margin, y: 14, class: "direction" }, "← better"));
  picture.appendChild(svg("text", { x: width - margin, y: 14, "text-anchor": "end", class: "direction" }, "worse →"));
  return picture;
}

/** The number the boundary is on: the look's ln Λ must reach ln(1/threshold) for p ≤ threshold. */
function boundary(evidence: Evidence): number | null {
  return evidence.threshold !== null && evidence.threshold > 0 ? Math.log(1 / evidence.threshold) : null;
}

/** The current stage's numbers for a guard of a live ramp (absent on an incident). */
export interface StageNumbers {
  stage_observations: number;
  observations_per_minute: number | null;
  more_observations: number | null;
  more_minutes: number | null;
}

export interface TileInput {
  metric: string;
  definition: GuardDefinition | null;
  verdict: Verdict | null;
  evidence: Evidence | null;
  error: string | null;
  stage: StageNumbers | null;
  /** This guard's evidence at each look, oldest first. */
  looks: { time: number; evidence: Evidence }[];
  /** The ramp was killed and this guard's regression is why. */
  killedBy: boolean;
}

/**
 * Charts built for tiles; destroyed with [`destroyCharts`] before the tiles are drawn again.
 * The charts' code arrives after the tiles: a chart destroyed before then is never drawn.
 */
export type Charts = { destroy(): void }[];

export function destroyCharts(charts: Charts): void {
  for (const chart of charts.splice(0)) {
    chart.destroy();
  }
}

/** One guard: its metric as the heading, the verdict, the picture, the numbers, the charts. */
export function guardTile(input: TileInput, charts: Charts, heading: "h3" | "h4" = "h3"): HTMLElement {
  const { evidence, definition } = input;
  const tone = (input.verdict ?? "none").toLowerCase();
  const facts: Child[] = [];
  if (evidence !== null) {
    const rates = evidence.rate_treatment !== undefined;
    const level = (value: number | undefined): string =>
      value === undefined ? "—" : rates ? `${(value * 100).toFixed(2)}%` : formatNumber(value, 4);
    facts.push(
      fact("Samples per cohort", `treatment ${formatCount(evidence.n_treatment)} · control ${formatCount(evidence.n_control)}${evidence.burn_in_met ? "" : " (burn-in not met yet)"}`),
      fact(
        rates ? "Rates" : "Medians",
        `treatment ${level(rates ? evidence.rate_treatment : evidence.median_treatment)} · control ${level(rates ? evidence.rate_control : evidence.median_control)}`,
      ),
      fact("Effect", effectSentence(evidence, definition)),
      fact(
        "Statistic",
        `p = ${formatProbability(evidence.p_value)} against the threshold ${formatProbability(evidence.threshold)}; ` +
          `ln Λ = ${formatNumber(evidence.log_lambda)} against the boundary ${formatNumber(boundary(evidence))} (z = ${formatNumber(evidence.z)})`,
      ),
    );
  }
  if (input.stage !== null) {
    const stage = input.stage;
    const rate = stage.observations_per_minute === null ? "" : `, ${formatCount(stage.observations_per_minute)} a minute`;
    facts.push(fact("This stage", `${formatCount(stage.stage_observations)} observations${rate}`));
    if (stage.more_observations !== null && stage.more_observations > 0) {
      facts.push(fact("To decide", waitWords(stage.more_observations, stage.more_minutes)));
    }
  }
  if (input.error !== null) {
    facts.push(fact("Error", input.error));
  }
  const picture = evidence === null ? null : effectPicture(evidence, definition);
  const id = `guard-${++tiles}`;
  return el(
    "article",
    { class: `guard ${tone}`, "aria-labelledby": id },
    el(
      "div",
      { class: "guard-summary" },
      el(heading, { id }, input.metric),
      el(
        "p",
        { class: "verdict" },
        el("strong", { class: `verdict-${tone}` }, verdictWord(input.verdict)),
        definition?.critical === true ? " · critical" : null,
        definition?.category === undefined ? null : ` · ${definition.category}`,
        input.killedBy ? el("span", { class: "killed" }, " · Killed the ramp") : null,
      ),
      picture,
      facts.length === 0 ? el("p", {}, "No evidence yet: the guard has not looked.") : el("dl", {}, ...facts),
    ),
    evidenceCharts(input, charts),
  );
}

/**
 * Numbers the tiles' heading ids: metric names differing only in punctuation
 * (`p99.latency`, `p99_latency`) must not share an id, or a tile is named by another's heading.
 */
let tiles = 0;

function fact(term: string, value: string): DocumentFragment {
  const fragment = document.createDocumentFragment();
  fragment.append(el("dt", {}, term), el("dd", {}, value));
  return fragment;
}

/** "waiting for 1,240 more observations, about 14 minutes at the current rate" */
export function waitWords(more: number, minutes: number | null): string {
  const count = `${formatCount(more)} more observation${more === 1 ? "" : "s"}`;
  return minutes === null
    ? `waiting for ${count}; none counted in this stage yet, so no time can be estimated`
    : `waiting for ${count}, ${formatMinutes(minutes)} at the current rate`;
}

/**
 * Two charts over the looks: ln Λ against the boundary the sequential test must reach, and
 * the effect with its interval against the tolerance, both turned so that up is worse.
 */
function evidenceCharts(input: TileInput, charts: Charts): HTMLElement | null {
  const looks = input.looks;
  if (looks.length === 0) {
    return null;
  }
  const times = looks.map((look) => look.time);
  const first = times[0] ?? 0;
  const final = times[times.length - 1] ?? first;
  // The looks' own span; a single look gets a few minutes either side, where uPlot would
  // otherwise pick a span of its own.
  const span: uPlot.Range.MinMax = first === final ? [first - 300, final + 300] : [first, final];
  const timeRange = (): uPlot.Range.MinMax => span;
  const orient = orientation(input.definition);
  const turned = looks.map((look) => worse(look.evidence, input.definition));
  const statistic: uPlot.AlignedData = [
    times,
    looks.map((look) => finite(look.evidence.log_lambda)),
    looks.map((look) => boundary(look.evidence)),
  ];
  const effect: uPlot.AlignedData = [
    times,
    turned.map((point) => finite(point?.estimate)),
    turned.map((point) => finite(point?.low)),
    turned.map((point) => finite(point?.high)),
    looks.map((look) => look.evidence.tolerance.value),
  ];
  const last = looks[looks.length - 1]?.evidence;
  const scale = last === undefined ? (value: number) => String(value) : (value: number) => formatAmount(value, last, input.definition);
  const statisticBox = el("div", { class: "chart" });
  const effectBox = el("div", { class: "chart" });
  // uPlot is a chunk of its own, loaded with the first chart: the console's first load
  // carries only its own code. The tile shows at once; its charts follow.
  const drawn: { destroyed: boolean; charts: { destroy(): void }[] } = { destroyed: false, charts: [] };
  charts.push({
    destroy: () => {
      drawn.destroyed = true;
      for (const chart of drawn.charts.splice(0)) {
        chart.destroy();
      }
    },
  });
  charting ??= lazy(() => import("uplot").then((module) => module.default));
  charting.then(
    (UPlot) => {
      if (drawn.destroyed) {
        return;
      }
      drawn.charts.push(
        new UPlot(
          {
            width: 340,
            height: 170,
            title: "Sequential statistic",
            scales: { x: { time: true, range: timeRange } },
            legend: { live: false },
            series: [
              {},
              { label: "ln Λ", stroke: "#0969da", width: 2 },
              { label: "boundary", stroke: "#b42318", width: 1, dash: [6, 4] },
            ],
          },
          statistic,
          statisticBox,
        ),
        new UPlot(
          {
            width: 340,
            height: 170,
            title: orient > 0 ? "Effect (up is worse)" : "Effect (up is worse: lower is better)",
            scales: { x: { time: true, range: timeRange } },
            legend: { live: false },
            series: [
              {},
              { label: "effect", stroke: "#1d232a", width: 2 },
              { label: "interval low", stroke: "#8fb8e8", width: 1 },
              { label: "interval high", stroke: "#8fb8e8", width: 1 },
              { label: "tolerance", stroke: "#b42318", width: 1, dash: [6, 4] },
            ],
            bands: [{ series: [3, 2], fill: "rgba(9, 105, 218, 0.15)" }],
            axes: [{}, { values: (_, ticks) => ticks.map((tick) => scale(tick)), size: 80 }],
          },
          effect,
          effectBox,
        ),
      );
    },
    (failure: unknown) => {
      charting = null;
      statisticBox.textContent = describe(failure);
    },
  );
  const count = looks.length;
  return el(
    "div",
    { class: "charts" },
    el(
      "figure",
      { "aria-label": `ln Λ of ${input.metric} at each of ${count} looks against its boundary` },
      statisticBox,
      el("figcaption", {}, "The statistic reaches the dashed boundary when p reaches the threshold."),
    ),
    el(
      "figure",
      { "aria-label": `The effect on ${input.metric} and its interval at each of ${count} looks against the tolerance` },
      effectBox,
      el("figcaption", {}, "The effect and its interval (shaded); past the dashed tolerance is worse than allowed."),
    ),
  );
}

let charting: Promise<typeof uPlot> | null = null;

function finite(value: number | null | undefined): number | null {
  return value === null || value === undefined || !Number.isFinite(value) ? null : value;
}

/** This guard's evidence at each look. */
export function looksOf(history: History | null, metric: string): { time: number; evidence: Evidence }[] {
  if (history === null) {
    return [];
  }
  const points: { time: number; evidence: Evidence }[] = [];
  for (const look of history.looks) {
    const guard = look.guards.find((candidate) => candidate.metric === metric);
    if (guard?.evidence !== undefined) {
      points.push({ time: look.time, evidence: guard.evidence });
    }
  }
  return points;
}

const ACTIONS: Record<string, string> = {
  "ramp.start": "Started",
  "ramp.hold": "Held",
  "ramp.advance": "Advanced",
  "ramp.pause": "Paused",
  "ramp.resume": "Resumed",
  "ramp.kill": "Killed",
  "ramp.complete": "Completed",
  "ramp.abort": "Aborted",
};

/** A generation's decisions, oldest first, from audit entries that come newest first. */
export function decisionsOf(entries: AuditRecord[], generation: number): AuditRecord[] {
  return entries
    .filter((entry) => entry.action.startsWith("ramp.") && entry.after?.generation === generation)
    .reverse();
}

/** The decisions as a list: when, what, by whom, and why. */
export function decisionList(decisions: AuditRecord[], stages: readonly number[]): HTMLElement {
  if (decisions.length === 0) {
    return el("p", {}, "No decisions recorded for this generation.");
  }
  return el(
    "ol",
    { class: "decisions" },
    ...decisions.map((entry) => {
      const stage = entry.after?.stage;
      const where =
        stage === undefined ? "" : ` · stage ${stage + 1} of ${stages.length || "?"} (${formatPercent(entry.after?.percentage ?? stages[stage])})`;
      return el(
        "li",
        {},
        el("time", { datetime: entry.time }, formatTime(entry.time)),
        " ",
        el("strong", {}, ACTIONS[entry.action] ?? entry.action),
        ` by ${entry.actor}${where}`,
        entry.reason === undefined || entry.reason === "" ? null : el("div", { class: "reason" }, entry.reason),
      );
    }),
  );
}

export function formatPercent(value: number | undefined | null): string {
  return value === undefined || value === null ? "?" : `${Number(value.toPrecision(4))}%`;
}

/** When each stage was entered in this generation: by the start, or by an advance. */
export function stageEntries(decisions: AuditRecord[]): Map<number, string> {
  const entered = new Map<number, string>();
  for (const entry of decisions) {
    const stage = entry.after?.stage;
    if ((entry.action === "ramp.start" || entry.action === "ramp.advance") && stage !== undefined) {
      entered.set(stage, entry.time);
    }
  }
  return entered;
}
