// The Judge screen: two samples pasted or read from files, judged by the server with the
// ramp guard's statistics; the verdict in words, the effect with its interval against the
// tolerance, and both distributions drawn. The charts' code is loaded with `import()` when
// the first answer arrives, so it is not part of the console's first load.

import { ApiError, adminKey, headers, type Verdict } from "./api";
import { ChunkError, lazy } from "./chunk";
import { el, replaceChildren } from "./dom";
import type { Screen } from "./screen";
import { describe } from "./send";

/** A sample read from text, or the line that is not a number. */
export type Parsed = { values: number[] } | { line: number; message: string };

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Reads a sample as `ripcord judge` reads a file: one number per line, or CSV whose first
 * column holds the numbers; a first line that is not a number is a header; empty lines and
 * lines starting with `#` are skipped; a field may be quoted.
 */
export function parseSample(text: string): Parsed {
  const values: number[] = [];
  let first = true;
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index += 1) {
    const line = (lines[index] ?? "").trim();
    if (line === "" || line.startsWith("#")) {
      continue;
    }
    let field = (line.split(",")[0] ?? "").trim();
    if (field.length >= 2 && field.startsWith('"') && field.endsWith('"')) {
      field = field.slice(1, -1).trim();
    }
    const isNumber = NUMBER.test(field);
    if (!isNumber && first) {
      first = false;
      continue;
    }
    first = false;
    const value = Number(field);
    if (!isNumber || !Number.isFinite(value)) {
      return { line: index + 1, message: `\`${field}\` is not a number` };
    }
    if (Math.abs(value) > 1e300) {
      return { line: index + 1, message: "beyond ±1e300, whose differences would overflow" };
    }
    values.push(value);
  }
  return { values };
}

const VERDICT_WORDS: Record<Verdict["verdict"], string> = {
  PASS: "The treatment is worse by less than the tolerance, if at all.",
  REGRESSION: "The treatment is worse, significantly and by at least the tolerance.",
  INCONCLUSIVE: "The samples cannot tell: too small or too noisy. Collect more and judge again, once, on the whole sample.",
};

export function openJudge(): Screen {
  return new JudgeScreen();
}

interface Side {
  name: "Treatment" | "Control";
  text: HTMLTextAreaElement;
  file: HTMLInputElement;
}

function number(value: number, digits = 4): string {
  if (!Number.isFinite(value)) {
    return String(value);
  }
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) {
    return value.toExponential(digits - 1);
  }
  return String(Number(value.toPrecision(digits)));
}

function signed(value: number, digits = 4): string {
  return value > 0 ? `+${number(value, digits)}` : number(value, digits);
}

class JudgeScreen implements Screen {
  readonly root: HTMLElement;
  private readonly sides: [Side, Side];
  private readonly better: HTMLSelectElement;
  private readonly tolerance: HTMLInputElement;
  private readonly confidence: HTMLInputElement;
  private readonly status: HTMLElement;
  private readonly result: HTMLElement;
  private readonly submit: HTMLButtonElement;
  private closed = false;
  private charts: { destroy(): void }[] = [];

  constructor() {
    this.sides = [this.side("Treatment"), this.side("Control")];
    this.better = el(
      "select",
      { id: "judge-better" },
      el("option", { value: "lower" }, "lower (latency, errors)"),
      el("option", { value: "higher" }, "higher (success, conversion)"),
    );
    this.tolerance = el("input", { id: "judge-tolerance", type: "text", placeholder: "5% or 0.5", autocomplete: "off" });
    this.confidence = el("input", { id: "judge-confidence", type: "number", min: "0.5", max: "0.9999", step: "0.01", value: "0.95" });
    this.submit = el("button", { type: "submit" }, "Judge");
    this.status = el("p", { role: "status", class: "status" });
    this.result = el("div", { class: "judge-result" });
    const form = el(
      "form",
      { class: "judge-form" },
      el("div", { class: "samples" }, ...this.sides.map((side) => this.sideFields(side))),
      el(
        "p",
        { class: "options" },
        el("label", { for: "judge-better" }, "Better"),
        " ",
        this.better,
        " ",
        el("label", { for: "judge-tolerance" }, "Tolerance"),
        " ",
        this.tolerance,
        " ",
        el("label", { for: "judge-confidence" }, "Confidence"),
        " ",
        this.confidence,
        " ",
        this.submit,
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.judge();
    });
    this.root = el(
      "section",
      { "aria-labelledby": "judge-heading", class: "judge" },
      el("h1", { id: "judge-heading" }, "Judge"),
      el(
        "p",
        {},
        "Compare a treatment sample with a control sample using the ramp guard's statistics: the Mann–Whitney U test and the Hodges–Lehmann shift. One number per line, or CSV whose first column holds the numbers. Give a tolerance for a verdict. Judge a whole sample once; re-judging as data arrive raises false alarms.",
      ),
      form,
      this.status,
      this.result,
    );
  }

  async load(): Promise<void> {
    // Nothing to read: the judge reads no environment.
  }

  close(): void {
    this.closed = true;
    this.destroyCharts();
  }

  private side(name: Side["name"]): Side {
    const id = `judge-${name.toLowerCase()}`;
    const text = el("textarea", { id, rows: "8", spellcheck: "false", placeholder: "117.5\n173.3\n…" });
    const file = el("input", { id: `${id}-file`, type: "file", accept: ".csv,.txt,.tsv,text/csv,text/plain" });
    file.addEventListener("change", () => {
      const chosen = file.files?.[0];
      if (chosen === undefined) {
        return;
      }
      chosen
        .text()
        .then((content) => {
          text.value = content;
          this.status.textContent = `${name}: read ${chosen.name}.`;
        })
        .catch((error: unknown) => {
          this.status.textContent = `Could not read ${chosen.name}: ${describe(error)}`;
        });
    });
    return { name, text, file };
  }

  private sideFields(side: Side): HTMLElement {
    return el(
      "div",
      { class: "sample" },
      el("label", { for: side.text.id }, side.name),
      side.text,
      el("label", { for: side.file.id, class: "file" }, `${side.name} file`),
      side.file,
    );
  }

  private async judge(): Promise<void> {
    const samples: number[][] = [];
    for (const side of this.sides) {
      const parsed = parseSample(side.text.value);
      if ("line" in parsed) {
        this.fail(`${side.name}, line ${parsed.line}: ${parsed.message}.`, side.text);
        return;
      }
      if (parsed.values.length === 0) {
        this.fail(`${side.name}: the sample is empty.`, side.text);
        return;
      }
      samples.push(parsed.values);
    }
    const [treatment, control] = samples as [number[], number[]];
    const tolerance = this.tolerance.value.trim();
    const body: Record<string, unknown> = {
      treatment,
      control,
      better: this.better.value,
      confidence: Number(this.confidence.value),
    };
    if (tolerance !== "") {
      body["tolerance"] = tolerance.endsWith("%") ? tolerance : Number(tolerance);
    }
    const key = adminKey();
    if (key === null) {
      this.fail("Not signed in.", null);
      return;
    }
    this.submit.disabled = true;
    this.status.textContent = "Judging…";
    try {
      // The answer and the charts' code at once.
      const [verdict, charts] = await Promise.all([
        fetch("/api/v1/judge", {
          method: "POST",
          headers: headers(key, { "Content-Type": "application/json", Accept: "application/json" }),
          body: JSON.stringify(body),
        }).then(async (response) => {
          const answer: unknown = await response.json().catch(() => null);
          if (!response.ok) {
            const error = answer as { message?: unknown; path?: unknown } | null;
            const where = typeof error?.path === "string" ? ` (${error.path})` : "";
            throw new ApiError(response.status, `${typeof error?.message === "string" ? error.message : response.statusText}${where}`);
          }
          return answer as Verdict;
        }),
        lazy(() => import("./judge-charts")),
      ]);
      if (this.closed) {
        return;
      }
      this.status.textContent = `Judged ${verdict.n_treatment} treatment and ${verdict.n_control} control values.`;
      this.show(verdict, treatment, control, charts);
    } catch (error) {
      this.fail(error instanceof ChunkError ? `Could not show the verdict: ${error.message}` : `The judge refused: ${describe(error)}`, null);
    } finally {
      this.submit.disabled = false;
    }
  }

  private fail(message: string, field: HTMLElement | null): void {
    this.destroyCharts();
    replaceChildren(this.result, el("p", { role: "alert", class: "error" }, message));
    this.status.textContent = "";
    field?.focus();
  }

  private destroyCharts(): void {
    for (const chart of this.charts) {
      chart.destroy();
    }
    this.charts = [];
  }

  private show(
    verdict: Verdict,
    treatment: number[],
    control: number[],
    charts: typeof import("./judge-charts"),
  ): void {
    this.destroyCharts();
    const hl = verdict.hodges_lehmann;
    const percent = `${Math.round(hl.confidence * 1000) / 10}%`;
    const rows: [string, string][] = [
      ["Treatment", `${verdict.n_treatment} values, median ${number(verdict.medians.treatment, 6)}`],
      ["Control", `${verdict.n_control} values, median ${number(verdict.medians.control, 6)}`],
      ["U", `${number(verdict.u, 8)} (U2 = ${number(verdict.u2, 8)}), ${verdict.method === "exact" ? "exact distribution" : `normal approximation${verdict.z === undefined ? "" : `, z = ${number(verdict.z, 6)}`}`}`],
      ["p-value", `${number(verdict.p_value)} (${verdict.alternative})`],
      ["Shift", `${signed(hl.estimate)}, ${percent} interval [${signed(hl.ci[0])}, ${signed(hl.ci[1])}] (Hodges–Lehmann: the median of treatment − control)`],
    ];
    const effect = verdict.effect;
    if (effect !== undefined) {
      rows.push([
        "Effect",
        `${effect.measure === "rate_difference" ? "rate difference" : "shift"} ${signed(effect.estimate)}; one-sided bound on the worse side ${signed(effect.worse_bound)} against a tolerance of ${number(effect.tolerance)}`,
      ]);
    }
    const effectFigure = el("figure", { class: "chart" });
    const effectChart = el("div", {});
    effectFigure.append(
      el("figcaption", {}, effect === undefined ? "The shift and its interval" : "The effect and its interval against the tolerance"),
      effectChart,
    );
    const distributionFigure = el("figure", { class: "chart" });
    const distributionChart = el("div", {});
    distributionFigure.append(el("figcaption", {}, "Both samples: the share of each in every bin"), distributionChart);
    replaceChildren(
      this.result,
      el(
        "section",
        { "aria-labelledby": "verdict-heading", class: `verdict ${verdict.verdict.toLowerCase()}` },
        el("h2", { id: "verdict-heading" }, `Verdict: ${verdict.verdict}`),
        el("p", {}, effect === undefined ? "No tolerance was given, so there is no verdict: the numbers alone." : VERDICT_WORDS[verdict.verdict]),
      ),
      el(
        "div",
        { class: "panels" },
        el(
          "div",
          {},
          el("table", { class: "numbers" }, el("tbody", {}, ...rows.map(([name, value]) => el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, value))))),
          effectFigure,
        ),
        distributionFigure,
      ),
    );
    const better = this.better.value === "higher" ? "higher" : "lower";
    this.charts.push(charts.effectChart(effectChart, verdict, better));
    this.charts.push(charts.distributionChart(distributionChart, treatment, control));
  }
}
