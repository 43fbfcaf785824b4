// The definition of a flag on its page: shown as text, and edited in a form that sends the
// whole flag to `PUT .../flags/{key}`. The server is the one judge of a flag; what it refuses
// comes back as problems with paths, and each is shown next to the field or group its path
// names. A refused save changes nothing: the stored flag stays on screen as it was, and the
// form keeps what the person typed so that they can correct it.

import type { FlagEntry } from "./api";
import { el, replaceChildren } from "./dom";
import {
  type Draft,
  type DraftRule,
  FLAG_TYPES,
  type Json,
  OPERATORS,
  type StoredFlag,
  draftOf,
  flagOf,
  readFlag,
  variantText,
} from "./flag-model";
import { type Problem, send } from "./flag-send";

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

interface Place {
  box: HTMLElement;
  control: HTMLElement;
}

export class FlagEditor {
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly editButton: HTMLButtonElement;
  private entry: FlagEntry | null = null;
  private stored: StoredFlag | null = null;
  private draft: Draft | null = null;
  /** The revision the draft was taken from, to tell the person when the flag moved on. */
  private draftRevision = 0;
  private places = new Map<string, Place>();
  private form: HTMLFormElement | null = null;
  private summary: HTMLElement = el("div");
  private moved: HTMLElement = el("p");
  private saving = false;
  /** What the last problems marked, with the description each had before. */
  private marked: [HTMLElement, string | null][] = [];

  constructor(
    private readonly key: string,
    private readonly flagPath: string,
    private readonly saved: (entry: FlagEntry) => void,
  ) {
    this.editButton = el("button", { type: "button" }, "Edit flag");
    this.editButton.addEventListener("click", () => this.edit());
    this.body = el("div");
    this.root = el(
      "section",
      { "aria-labelledby": "definition-heading", class: "definition" },
      el("div", { class: "heading-row" }, el("h2", { id: "definition-heading" }, "Definition"), this.editButton),
      this.body,
    );
  }

  /** The flag as stored now. While a draft is open it is kept, with a word if the flag moved on. */
  show(entry: FlagEntry): void {
    this.entry = entry;
    this.stored = readFlag(entry.flag);
    if (this.draft === null) {
      replaceChildren(this.body, ...viewOf(this.stored));
      return;
    }
    this.noteMoved();
  }

  private noteMoved(): void {
    const revision = this.entry?.revision ?? this.draftRevision;
    this.moved.textContent =
      revision !== this.draftRevision
        ? `This flag changed on the server (revision ${revision}) since you began editing; saving replaces that change with this form.`
        : "";
  }

  private edit(): void {
    if (this.stored === null || this.entry === null) {
      return;
    }
    this.draft = draftOf(this.stored);
    this.draftRevision = this.entry.revision;
    this.editButton.hidden = true;
    this.render("edit-description");
  }

  private stop(): void {
    this.draft = null;
    this.form = null;
    this.places.clear();
    this.editButton.hidden = false;
    if (this.stored !== null) {
      replaceChildren(this.body, ...viewOf(this.stored));
    }
    this.editButton.focus();
  }

  /** Draws the form from the draft; `focus` names the control to put the focus back on. */
  private render(focus: string | null): void {
    const draft = this.draft;
    if (draft === null) {
      return;
    }
    this.places.clear();
    this.marked = [];
    this.summary = el("div", { role: "alert", class: "problems", tabindex: "-1" });
    this.moved = el("p", { class: "note", role: "status" });
    this.noteMoved();
    const save = el("button", { type: "submit" }, "Save flag");
    const discard = el("button", { type: "button" }, "Discard changes");
    discard.addEventListener("click", () => this.stop());
    const form = el(
      "form",
      { class: "flag-form", "aria-label": `Edit ${this.key}`, novalidate: "" },
      this.summary,
      this.moved,
      this.generalFields(draft),
      this.variantFields(draft),
      this.ruleFields(draft),
      this.rolloutFields(draft),
      el("div", { class: "buttons" }, save, discard),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.save();
    });
    this.form = form;
    replaceChildren(this.body, form);
    if (focus !== null) {
      document.getElementById(focus)?.focus();
    }
  }

  // Structure changes (a rule added, a condition removed) redraw the form; typing does not.
  private change(focus: string | null, mutate: (draft: Draft) => void): void {
    if (this.draft !== null) {
      mutate(this.draft);
      this.render(focus);
    }
  }

  private generalFields(draft: Draft): HTMLElement {
    const description = textInput(draft.description, (value) => (draft.description = value));
    // The type says how variant values are typed: the form is drawn again to say so.
    const types: string[] = [...FLAG_TYPES];
    const type = select(types.includes(draft.type) ? types : [draft.type, ...types], draft.type, (value) => this.change("edit-type", (d) => (d.type = value)));
    const defaultVariant = textInput(draft.defaultVariant, (value) => (draft.defaultVariant = value));
    defaultVariant.setAttribute("list", "edit-variant-names");
    const visible = el("input", { type: "checkbox" });
    visible.checked = draft.clientVisible;
    visible.addEventListener("change", () => (draft.clientVisible = visible.checked));
    return el(
      "fieldset",
      {},
      el("legend", {}, "Flag"),
      this.field("description", "edit-description", "Description", description),
      this.field("type", "edit-type", "Type", type),
      this.field("default_variant", "edit-default-variant", "Default variant", defaultVariant,
        "Served when the flag is killed, when no rule matches and the context is outside the rollout."),
      this.field("client_visible", "edit-client-visible", "Visible to client keys", visible),
      el("datalist", { id: "edit-variant-names" }, ...draft.variants.map((variant) => el("option", { value: variant.name }))),
    );
  }

  private variantFields(draft: Draft): HTMLElement {
    const rows = draft.variants.map((variant, index) => {
      const name = textInput(variant.name, (value) => (variant.name = value));
      // An object's value is JSON of several lines, the others one line.
      const value: Control = draft.type === "object" ? textArea(variant.value, 3, (typed) => (variant.value = typed)) : textInput(variant.value, (typed) => (variant.value = typed));
      const remove = el("button", { type: "button", "aria-label": `Remove variant ${index + 1}` }, "Remove");
      remove.addEventListener("click", () => this.change("edit-add-variant", (d) => d.variants.splice(index, 1)));
      const row = el(
        "div",
        { class: "row" },
        this.field(null, `edit-variant-${index}-name`, `Name of variant ${index + 1}`, name),
        this.field(null, `edit-variant-${index}-value`, `Value of variant ${index + 1}`, value),
        remove,
      );
      // The server names a variant's problems by the variant's name.
      this.places.set(`variants.${variant.name}`, { box: row, control: value });
      return row;
    });
    const add = el("button", { type: "button", id: "edit-add-variant" }, "Add variant");
    add.addEventListener("click", () =>
      this.change(`edit-variant-${draft.variants.length}-name`, (d) => d.variants.push({ name: "", value: "" })),
    );
    const box = el(
      "fieldset",
      {},
      el("legend", {}, "Variants"),
      el("p", { class: "hint" }, draft.type === "string" ? "Values are text as typed." : "Values are JSON: true, 42, 2.5, {\"a\": 1}."),
      ...rows,
      add,
    );
    this.places.set("variants", { box, control: add });
    return box;
  }

  private ruleFields(draft: Draft): HTMLElement {
    const rules = draft.rules.map((rule, index) => this.ruleBox(draft, rule, index));
    const add = el("button", { type: "button", id: "edit-add-rule" }, "Add rule");
    add.addEventListener("click", () =>
      this.change(`edit-rule-${draft.rules.length}-name`, (d) =>
        d.rules.push({ name: "", segment: "", when: [{ attribute: "", op: "eq", values: "" }], serve: "" }),
      ),
    );
    const box = el(
      "fieldset",
      {},
      el("legend", {}, "Rules"),
      el("p", { class: "hint" }, "Tried in order; the first that matches serves its variant. Condition values: one per line. For the text operators (starts_with, ends_with, contains, matches, semver_…) each line is text; for the others a line that reads as JSON (42, true, \"quoted\") is that value and any other line is text."),
      ...rules,
      add,
    );
    this.places.set("rules", { box, control: add });
    return box;
  }

  private ruleBox(draft: Draft, rule: DraftRule, index: number): HTMLElement {
    const at = `rules[${index}]`;
    const id = `edit-rule-${index}`;
    const name = textInput(rule.name, (value) => (rule.name = value));
    const segment = textInput(rule.segment, (value) => (rule.segment = value));
    const serve = textInput(rule.serve, (value) => (rule.serve = value));
    serve.setAttribute("list", "edit-variant-names");
    const conditions = rule.when.map((condition, position) => {
      const where = `${at}.when[${position}]`;
      const cid = `${id}-condition-${position}`;
      const attribute = textInput(condition.attribute, (value) => (condition.attribute = value));
      const op = select(
        OPERATORS.includes(condition.op as (typeof OPERATORS)[number]) ? [...OPERATORS] : [condition.op, ...OPERATORS],
        condition.op,
        (value) => (condition.op = value),
      );
      const values = textArea(condition.values, 2, (typed) => (condition.values = typed));
      const remove = el("button", { type: "button", "aria-label": `Remove condition ${position + 1} of rule ${index + 1}` }, "Remove condition");
      remove.addEventListener("click", () => this.change(`${id}-add-condition`, () => rule.when.splice(position, 1)));
      const box = el(
        "fieldset",
        { class: "condition" },
        el("legend", {}, `Condition ${position + 1}`),
        el(
          "div",
          { class: "row" },
          this.field(`${where}.attribute`, `${cid}-attribute`, "Attribute", attribute),
          this.field(`${where}.op`, `${cid}-op`, "Operator", op),
          this.field(`${where}.values`, `${cid}-values`, "Values", values),
          remove,
        ),
      );
      this.places.set(where, { box, control: attribute });
      return box;
    });
    const addCondition = el("button", { type: "button", id: `${id}-add-condition` }, "Add condition");
    addCondition.addEventListener("click", () =>
      this.change(`${id}-condition-${rule.when.length}-attribute`, () => rule.when.push({ attribute: "", op: "eq", values: "" })),
    );
    const up = el("button", { type: "button", id: `${id}-up`, "aria-label": `Move rule ${index + 1} up` }, "Move up");
    up.disabled = index === 0;
    // The focus follows the moved rule, onto a button that is still enabled where it lands.
    up.addEventListener("click", () =>
      this.change(`edit-rule-${index - 1}-${index - 1 === 0 ? "down" : "up"}`, (d) => swap(d.rules, index, index - 1)),
    );
    const down = el("button", { type: "button", id: `${id}-down`, "aria-label": `Move rule ${index + 1} down` }, "Move down");
    down.disabled = index === draft.rules.length - 1;
    down.addEventListener("click", () =>
      this.change(`edit-rule-${index + 1}-${index + 1 === draft.rules.length - 1 ? "up" : "down"}`, (d) => swap(d.rules, index, index + 1)),
    );
    const remove = el("button", { type: "button", "aria-label": `Remove rule ${index + 1}` }, "Remove rule");
    remove.addEventListener("click", () => this.change("edit-add-rule", (d) => d.rules.splice(index, 1)));
    const box = el(
      "fieldset",
      { class: "rule" },
      el("legend", {}, `Rule ${index + 1}`),
      el(
        "div",
        { class: "row" },
        this.field(`${at}.name`, `${id}-name`, "Name", name),
        this.field(`${at}.segment`, `${id}-segment`, "Segment", segment),
        this.field(`${at}.serve.variant`, `${id}-serve`, "Serve variant", serve),
      ),
      ...conditions,
      el("div", { class: "buttons" }, addCondition, up, down, remove),
    );
    this.places.set(at, { box, control: name });
    this.places.set(`${at}.when`, { box, control: addCondition });
    this.places.set(`${at}.serve`, { box, control: serve });
    return box;
  }

  private rolloutFields(draft: Draft): HTMLElement {
    const rollout = draft.rollout;
    if (rollout === null) {
      const add = el("button", { type: "button", id: "edit-add-rollout" }, "Add rollout");
      add.addEventListener("click", () =>
        this.change("edit-percentage", (d) => {
          const first = d.variants.find((variant) => variant.name !== d.defaultVariant) ?? d.variants[0];
          d.rollout = { percentage: "0", stickiness: "", salt: "", split: [{ variant: first?.name ?? "", weight: "1" }] };
        }),
      );
      const box = el("fieldset", {}, el("legend", {}, "Rollout"), el("p", {}, "No rollout: contexts that match no rule get the default variant."), add);
      this.places.set("rollout", { box, control: add });
      return box;
    }
    const percentage = textInput(rollout.percentage, (value) => (rollout.percentage = value));
    percentage.inputMode = "decimal";
    const stickiness = textInput(rollout.stickiness, (value) => (rollout.stickiness = value));
    stickiness.placeholder = "targetingKey";
    const salt = textInput(rollout.salt, (value) => (rollout.salt = value));
    salt.placeholder = this.key;
    const split = rollout.split.map((entry, index) => {
      const at = `rollout.split[${index}]`;
      const variant = textInput(entry.variant, (value) => (entry.variant = value));
      variant.setAttribute("list", "edit-variant-names");
      const weight = textInput(entry.weight, (value) => (entry.weight = value));
      weight.inputMode = "numeric";
      const remove = el("button", { type: "button", "aria-label": `Remove split entry ${index + 1}` }, "Remove");
      remove.addEventListener("click", () => this.change("edit-add-split", () => rollout.split.splice(index, 1)));
      const row = el(
        "div",
        { class: "row" },
        this.field(`${at}.variant`, `edit-split-${index}-variant`, `Split variant ${index + 1}`, variant),
        this.field(`${at}.weight`, `edit-split-${index}-weight`, `Weight ${index + 1}`, weight),
        remove,
      );
      this.places.set(at, { box: row, control: variant });
      return row;
    });
    const addSplit = el("button", { type: "button", id: "edit-add-split" }, "Add split entry");
    addSplit.addEventListener("click", () =>
      this.change(`edit-split-${rollout.split.length}-variant`, () => rollout.split.push({ variant: "", weight: "1" })),
    );
    const remove = el("button", { type: "button" }, "Remove rollout");
    remove.addEventListener("click", () => this.change("edit-add-rollout", (d) => (d.rollout = null)));
    const splitBox = el("fieldset", {}, el("legend", {}, "Split"), ...split, addSplit);
    this.places.set("rollout.split", { box: splitBox, control: addSplit });
    const box = el(
      "fieldset",
      {},
      el("legend", {}, "Rollout"),
      el("div", { class: "row" },
        this.field("rollout.percentage", "edit-percentage", "Percentage", percentage, "0 to 100, at most three decimals."),
        this.field("rollout.stickiness", "edit-stickiness", "Stickiness attribute", stickiness, "The context attribute units are bucketed by; targetingKey when empty."),
        this.field("rollout.salt", "edit-salt", "Salt", salt, "The flag key when empty."),
      ),
      splitBox,
      remove,
    );
    this.places.set("rollout", { box, control: percentage });
    return box;
  }

  /** A labelled control, registered at `path` so that a problem there is shown beside it. */
  private field(path: string | null, id: string, label: string, control: Control, hint?: string): HTMLElement {
    control.id = id;
    const hintNode = hint === undefined ? null : el("span", { class: "hint", id: `${id}-hint` }, hint);
    if (hintNode !== null) {
      control.setAttribute("aria-describedby", hintNode.id);
    }
    const box = el("div", { class: "field" }, el("label", { for: id }, label), control, hintNode);
    if (path !== null) {
      this.places.set(path, { box, control });
    }
    return box;
  }

  private async save(): Promise<void> {
    if (this.draft === null || this.stored === null || this.saving) {
      return;
    }
    const twice = repeatedVariant(this.draft);
    if (twice !== null) {
      this.showProblems([{ path: `variants.${twice}`, message: `the variant \`${twice}\` appears twice` }], "Not saved: ");
      return;
    }
    // What the form does not edit (the kill switch, the ramp) is sent as it is stored now, so
    // that a save never undoes a kill made while the form was open.
    const body = flagOf(this.draft, this.stored);
    this.saving = true;
    this.summary.textContent = "";
    const sent = await send<FlagEntry>("PUT", this.flagPath, body);
    this.saving = false;
    if (this.draft === null) {
      return;
    }
    if (sent.ok) {
      this.draft = null;
      this.form = null;
      this.places.clear();
      this.editButton.hidden = false;
      this.saved(sent.value);
      this.editButton.focus();
      return;
    }
    const prefix = `flags.${this.key}`;
    const problems = sent.problems.map((problem) => ({ path: relative(problem.path, prefix), message: problem.message }));
    this.showProblems(problems.length > 0 ? problems : [{ path: "", message: sent.message }], "Not saved, nothing changed: ");
  }

  private showProblems(problems: Problem[], lead: string): void {
    const form = this.form;
    if (form === null) {
      return;
    }
    for (const old of form.querySelectorAll(".problem")) {
      old.remove();
    }
    for (const [element, described] of this.marked) {
      element.removeAttribute("aria-invalid");
      if (described === null) {
        element.removeAttribute("aria-describedby");
      } else {
        element.setAttribute("aria-describedby", described);
      }
    }
    this.marked = [];
    const items: HTMLElement[] = [];
    let first: HTMLElement | null = null;
    problems.forEach((problem, index) => {
      const place = this.placeOf(problem.path);
      if (place === null) {
        items.push(el("li", {}, problem.path === "" ? problem.message : `${problem.path}: ${problem.message}`));
        return;
      }
      items.push(el("li", {}, `${placeName(place)}: ${problem.message}`));
      const id = `edit-problem-${index}`;
      const note = el("p", { class: "problem", id }, problem.message);
      const legend = place.box.tagName === "FIELDSET" ? place.box.querySelector(":scope > legend") : null;
      if (legend !== null) {
        legend.after(note);
      } else {
        place.box.append(note);
      }
      // A field is marked invalid; a group (a rule, the split) is described by its problem,
      // and the focus goes to its first control.
      const marked = legend === null ? place.control : place.box;
      const described = marked.getAttribute("aria-describedby");
      if (!this.marked.some(([element]) => element === marked)) {
        this.marked.push([marked, described]);
      }
      if (legend === null) {
        marked.setAttribute("aria-invalid", "true");
      }
      marked.setAttribute("aria-describedby", described === null ? id : `${id} ${described}`);
      first ??= place.control;
    });
    replaceChildren(
      this.summary,
      el("p", {}, `${lead}${problems.length === 1 ? "one problem" : `${problems.length} problems`}.`),
      el("ul", {}, ...items),
    );
    (first ?? this.summary).focus();
  }

  /** The place a path names, or the nearest enclosing one: `rules[0].when[1].values[2]` is shown at the values of that condition. */
  private placeOf(path: string): Place | null {
    let best: string | null = null;
    for (const known of this.places.keys()) {
      const inside = path === known || path.startsWith(`${known}.`) || path.startsWith(`${known}[`);
      if (inside && (best === null || known.length > best.length)) {
        best = known;
      }
    }
    return best === null ? null : (this.places.get(best) ?? null);
  }
}

/** Where a place is, in the words on screen: "Rules › Rule 2 › Condition 1 › Values". */
function placeName(place: Place): string {
  const names: string[] = [];
  for (let node: HTMLElement | null = place.box; node !== null && node.tagName !== "FORM"; node = node.parentElement) {
    if (node.tagName === "FIELDSET") {
      names.unshift(node.querySelector(":scope > legend")?.textContent ?? "");
    }
  }
  const control = place.control;
  const labelled = control instanceof HTMLInputElement || control instanceof HTMLTextAreaElement || control instanceof HTMLSelectElement;
  if (place.box.tagName !== "FIELDSET" && labelled) {
    const label = control.labels?.[0]?.textContent;
    if (label !== undefined) {
      names.push(label);
    }
  }
  return names.filter((name) => name !== "").join(" › ");
}

/** A problem's path within the flag: `flags.new-checkout.rules[0]` is `rules[0]`; the flag itself is "". */
function relative(path: string, prefix: string): string {
  if (path === prefix) {
    return "";
  }
  if (path.startsWith(`${prefix}.`)) {
    return path.slice(prefix.length + 1);
  }
  return path.startsWith(`${prefix}[`) ? path.slice(prefix.length) : path;
}

function repeatedVariant(draft: Draft): string | null {
  const seen = new Set<string>();
  for (const variant of draft.variants) {
    if (seen.has(variant.name)) {
      return variant.name;
    }
    seen.add(variant.name);
  }
  return null;
}

function swap<T>(items: T[], a: number, b: number): void {
  const first = items[a];
  const second = items[b];
  if (first !== undefined && second !== undefined) {
    items[a] = second;
    items[b] = first;
  }
}

function textInput(value: string, input: (value: string) => void): HTMLInputElement {
  const control = el("input", { type: "text", autocomplete: "off", spellcheck: "false" });
  control.value = value;
  control.addEventListener("input", () => input(control.value));
  return control;
}

function textArea(value: string, rows: number, input: (value: string) => void): HTMLTextAreaElement {
  const control = el("textarea", { rows: String(rows), spellcheck: "false" });
  control.value = value;
  control.addEventListener("input", () => input(control.value));
  return control;
}

function select(options: string[], value: string, input: (value: string) => void): HTMLSelectElement {
  const control = el("select", {}, ...options.map((option) => el("option", { value: option }, option)));
  control.value = value;
  control.addEventListener("change", () => input(control.value));
  return control;
}

// The flag shown as text.

function viewOf(flag: StoredFlag): Node[] {
  const nodes: Node[] = [];
  if (flag.description !== undefined) {
    nodes.push(el("p", { class: "flag-description" }, flag.description));
  }
  nodes.push(
    el(
      "dl",
      { class: "facts" },
      el("dt", {}, "Type"), el("dd", {}, flag.type),
      el("dt", {}, "Default variant"), el("dd", {}, flag.defaultVariant),
      el("dt", {}, "Visible to client keys"), el("dd", {}, flag.clientVisible === true ? "Yes" : "No"),
    ),
  );
  nodes.push(
    el("h3", {}, "Variants"),
    el(
      "table",
      { class: "variants" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Variant"), el("th", { scope: "col" }, "Value"))),
      el(
        "tbody",
        {},
        ...flag.variants.map(([name, value]) =>
          el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, el("code", {}, variantShown(flag.type, value)))),
        ),
      ),
    ),
  );
  nodes.push(el("h3", {}, "Rules"));
  if (flag.rules.length === 0) {
    nodes.push(el("p", {}, "No rules."));
  } else {
    nodes.push(
      el(
        "ol",
        { class: "rules" },
        ...flag.rules.map((rule) => {
          const parts: string[] = [];
          if (rule.segment !== undefined) {
            parts.push(`in segment ${rule.segment}`);
          }
          for (const condition of rule.when) {
            parts.push([condition.attribute, condition.op, condition.values.map(valueShown).join(", ")].filter((part) => part !== "").join(" "));
          }
          return el(
            "li",
            {},
            rule.name === undefined ? null : el("strong", {}, rule.name),
            rule.name === undefined ? null : ": ",
            `if ${parts.join(" and ")}, serve `,
            el("code", {}, rule.serve),
          );
        }),
      ),
    );
  }
  nodes.push(el("h3", {}, "Rollout"));
  const rollout = flag.rollout;
  if (rollout === undefined) {
    nodes.push(el("p", {}, "No rollout: contexts that match no rule get the default variant."));
  } else {
    const total = rollout.split.reduce((sum, entry) => sum + entry.weight, 0);
    nodes.push(
      el(
        "dl",
        { class: "facts" },
        el("dt", {}, "Percentage"), el("dd", {}, `${rollout.percentage}%`),
        el("dt", {}, "Stickiness attribute"), el("dd", {}, rollout.stickiness ?? "targetingKey (default)"),
        el("dt", {}, "Salt"), el("dd", {}, rollout.salt ?? "the flag key (default)"),
        el("dt", {}, "Split"),
        el(
          "dd",
          {},
          rollout.split
            .map((entry) => `${entry.variant} × ${entry.weight}${total > 0 ? ` (${Math.round((entry.weight / total) * 1000) / 10}%)` : ""}`)
            .join(", "),
        ),
      ),
    );
  }
  if ("ramp" in flag.rest) {
    nodes.push(el("p", { class: "hint" }, "This flag has a ramp: see Ramp below. The ramp is kept as it is when the flag is edited here."));
  }
  return nodes;
}

function variantShown(type: string, value: Json): string {
  return type === "string" && typeof value === "string" ? JSON.stringify(value) : variantText(type, value);
}

function valueShown(value: Json): string {
  return JSON.stringify(value);
}
