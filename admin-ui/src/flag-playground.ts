// The evaluation playground: a context typed as JSON, and what every flag of the environment
// answers it and why, from `POST .../explain`, the same evaluation OFREP runs. Once a context
// has been explained, it is explained again whenever the environment changes, so the answer on
// screen is the one the flags give now.

import { el, replaceChildren } from "./dom";
import type { Json } from "./flag-model";
import { send } from "./flag-send";
import { describe } from "./send";

interface Explained {
  key: string;
  type: string;
  value: Json;
  variant?: string;
  reason: string;
  revision: number;
  rule?: { index: number; name?: string };
  rollout?: { bucket: number; threshold: number; buckets: number; percentage: number };
  cohort?: string;
  stage?: number;
  unit_missing?: string;
}

interface Explanation {
  environment: string;
  revision: number;
  flags: Explained[];
}

const numbers = new Intl.NumberFormat("en-US");

const SHOWN = 500;

export class Playground {
  readonly root: HTMLElement;
  private readonly context: HTMLTextAreaElement;
  private readonly problem: HTMLElement;
  private readonly status: HTMLElement;
  private readonly results: HTMLElement;
  private readonly filter: HTMLInputElement;
  private readonly filterBox: HTMLElement;
  private last: Explanation | null = null;
  /** The context last explained, explained again on changes. */
  private explained: Record<string, unknown> | null = null;
  private asked = 0;
  private refreshing = false;
  private again = false;

  constructor(
    private readonly environment: string,
    private readonly key: string,
  ) {
    this.context = el("textarea", { id: "playground-context", rows: "4", spellcheck: "false", "aria-describedby": "playground-hint" });
    this.context.value = JSON.stringify({ targetingKey: "user-1" });
    this.context.addEventListener("keydown", (event) => {
      // Enter writes a new line in a text area; Ctrl+Enter explains.
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        void this.submit();
      }
    });
    this.problem = el("p", { class: "problem", id: "playground-problem", role: "alert" });
    this.status = el("p", { role: "status", class: "status" });
    this.results = el("div");
    this.filter = el("input", { type: "search", id: "playground-filter", autocomplete: "off" });
    this.filter.addEventListener("input", () => {
      if (this.last !== null) {
        this.show(this.last);
      }
    });
    this.filterBox = el("p", { class: "search" }, el("label", { for: this.filter.id }, "Filter explained flags"), " ", this.filter);
    this.filterBox.hidden = true;
    const form = el(
      "form",
      { "aria-label": "Evaluation context" },
      el(
        "div",
        { class: "field" },
        el("label", { for: this.context.id }, "Context"),
        this.context,
        el(
          "span",
          { class: "hint", id: "playground-hint" },
          'A JSON object, as an application sends it: {"targetingKey": "user-7", "email": "ada@example.com"}. Ctrl+Enter explains.',
        ),
        this.problem,
      ),
      el("div", { class: "buttons" }, el("button", { type: "submit" }, "Explain")),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.submit();
    });
    this.root = el(
      "section",
      { "aria-labelledby": "playground-heading", class: "playground" },
      el("h2", { id: "playground-heading" }, "Evaluation playground"),
      el("p", {}, `Type a context and see what every flag of ${environment} gives it, and why.`),
      form,
      this.status,
      this.filterBox,
      this.results,
    );
  }

  /** The environment changed: the answer on screen may be stale. */
  changed(): void {
    if (this.explained === null) {
      return;
    }
    // A burst of changes (an import, a ramp walking) asks once more after the question in
    // flight, not once per change: each explanation covers every flag of the environment.
    if (this.refreshing) {
      this.again = true;
      return;
    }
    this.refreshing = true;
    void (async () => {
      do {
        this.again = false;
        if (this.explained !== null) {
          await this.explain(this.explained);
        }
      } while (this.again);
      this.refreshing = false;
    })();
  }

  private async submit(): Promise<void> {
    let context: unknown;
    try {
      context = JSON.parse(this.context.value);
    } catch (failure) {
      this.refuse(`Not JSON: ${describe(failure)}`);
      return;
    }
    if (typeof context !== "object" || context === null || Array.isArray(context)) {
      this.refuse("The context is a JSON object: {\"targetingKey\": \"user-7\"}.");
      return;
    }
    await this.explain(context as Record<string, unknown>);
  }

  private refuse(message: string): void {
    this.problem.textContent = message;
    this.context.setAttribute("aria-invalid", "true");
    this.context.setAttribute("aria-describedby", "playground-problem playground-hint");
    this.context.focus();
  }

  private async explain(context: Record<string, unknown>): Promise<void> {
    this.asked += 1;
    const asked = this.asked;
    const sent = await send<Explanation>("POST", `/api/v1/environments/${encodeURIComponent(this.environment)}/explain`, { context });
    // Only the newest question's answer is shown.
    if (asked !== this.asked) {
      return;
    }
    if (!sent.ok) {
      this.refuse(sent.problems[0]?.message ?? sent.message);
      return;
    }
    this.explained = context;
    this.problem.textContent = "";
    this.context.removeAttribute("aria-invalid");
    this.context.setAttribute("aria-describedby", "playground-hint");
    this.status.textContent = `${sent.value.flags.length} flag${sent.value.flags.length === 1 ? "" : "s"} explained at revision ${sent.value.revision}.`;
    this.last = sent.value;
    this.filterBox.hidden = false;
    this.show(sent.value);
  }

  private show(explanation: Explanation): void {
    // The page's flag comes first; an environment of thousands of flags shows the first
    // SHOWN that match the filter, so that the table stays quick to draw.
    const query = this.filter.value.trim().toLowerCase();
    const matching = explanation.flags.filter((flag) => query === "" || flag.key.toLowerCase().includes(query));
    const ordered = [
      ...matching.filter((flag) => flag.key === this.key),
      ...matching.filter((flag) => flag.key !== this.key),
    ];
    const rows = ordered.slice(0, SHOWN).map((flag) =>
      el(
        "tr",
        { class: flag.key === this.key ? "current" : undefined, "data-flag": flag.key },
        el("th", { scope: "row" }, flag.key, flag.key === this.key ? el("span", { class: "hint" }, " (this flag)") : null),
        el("td", {}, el("code", {}, JSON.stringify(flag.value))),
        el("td", {}, flag.variant ?? "—"),
        el("td", {}, flag.reason),
        el("td", {}, ruleOf(flag)),
        el("td", {}, bucketOf(flag)),
        el("td", {}, flag.cohort ?? "—"),
        el("td", {}, flag.stage === undefined ? "—" : String(flag.stage + 1)),
      ),
    );
    replaceChildren(
      this.results,
      el(
        "table",
        { class: "explained" },
        el("caption", {}, `What each flag of ${explanation.environment} gives this context, at revision ${explanation.revision}`),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ...["Flag", "Value", "Variant", "Reason", "Rule matched", "Bucket", "Cohort", "Ramp stage"].map((name) =>
              el("th", { scope: "col" }, name),
            ),
          ),
        ),
        el("tbody", {}, ...rows),
      ),
      ordered.length > SHOWN ? el("p", { class: "hint" }, `Showing ${SHOWN} of ${ordered.length} flags: filter by key to see others.`) : null,
      ordered.length === 0 ? el("p", {}, "No flag matches.") : null,
    );
  }
}

function ruleOf(flag: Explained): string {
  if (flag.rule === undefined) {
    return "—";
  }
  // Rules are numbered from 1 on the page, as a person counts them.
  return flag.rule.name === undefined ? `rule ${flag.rule.index + 1}` : `rule ${flag.rule.index + 1}, ${flag.rule.name}`;
}

function bucketOf(flag: Explained): string {
  if (flag.unit_missing !== undefined) {
    return `no unit: the context has no usable ${flag.unit_missing}`;
  }
  const place = flag.rollout;
  if (place === undefined) {
    return "—";
  }
  const inside = place.bucket < place.threshold;
  return `${numbers.format(place.bucket)} ${inside ? "<" : "≥"} ${numbers.format(place.threshold)} (${place.percentage}%): ${inside ? "in" : "outside"} the rollout`;
}
