// A flag as the flag page reads and edits it. The stored flag is read defensively (the page
// must not break on a field it does not know), and edited as a draft of strings, which is
// what form fields hold; the draft becomes the flag again only when it is sent. The server
// validates: the draft turns text into JSON values as literally as it can and leaves every
// judgement (a variant that does not exist, a percentage over 100) to it.

import type { Flag } from "./api";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export const FLAG_TYPES = ["boolean", "string", "integer", "float", "object"] as const;

export const OPERATORS = [
  "eq", "neq", "in", "not_in", "starts_with", "ends_with", "contains", "matches",
  "lt", "lte", "gt", "gte",
  "semver_lt", "semver_lte", "semver_gt", "semver_gte", "semver_eq",
  "before", "after", "exists", "not_exists",
] as const;

export interface Condition {
  attribute: string;
  op: string;
  values: Json[];
}

export interface Rule {
  name?: string;
  when: Condition[];
  segment?: string;
  serve: string;
}

export interface SplitEntry {
  variant: string;
  weight: number;
}

export interface Rollout {
  percentage: number;
  split: SplitEntry[];
  stickiness?: string;
  salt?: string;
}

export interface StoredFlag {
  type: string;
  variants: [string, Json][];
  defaultVariant: string;
  description?: string;
  enabled: boolean;
  clientVisible?: boolean;
  rules: Rule[];
  rollout?: Rollout;
  /** The fields the form does not edit (the ramp, fields of a newer server): sent back as they were. */
  rest: Record<string, unknown>;
}

const EDITED = new Set(["type", "variants", "default_variant", "description", "client_visible", "rules", "rollout"]);

function text(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? (value as unknown[]) : [];
}

export function readFlag(flag: Flag): StoredFlag {
  const raw = flag as Record<string, unknown>;
  const rest: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(raw)) {
    if (!EDITED.has(field)) {
      rest[field] = value;
    }
  }
  const stored: StoredFlag = {
    type: text(raw["type"]),
    variants: Object.entries(record(raw["variants"])).map(([name, value]) => [name, value as Json]),
    defaultVariant: text(raw["default_variant"]),
    // Only an explicit `false` is the kill switch.
    enabled: raw["enabled"] !== false,
    rules: list(raw["rules"]).map(readRule),
    rest,
  };
  if (typeof raw["description"] === "string") {
    stored.description = raw["description"];
  }
  if (typeof raw["client_visible"] === "boolean") {
    stored.clientVisible = raw["client_visible"];
  }
  if (typeof raw["rollout"] === "object" && raw["rollout"] !== null) {
    const rollout = record(raw["rollout"]);
    const read: Rollout = {
      percentage: typeof rollout["percentage"] === "number" ? rollout["percentage"] : 0,
      split: list(rollout["split"]).map((entry) => {
        const fields = record(entry);
        return { variant: text(fields["variant"]), weight: typeof fields["weight"] === "number" ? fields["weight"] : 0 };
      }),
    };
    if (typeof rollout["stickiness"] === "string") {
      read.stickiness = rollout["stickiness"];
    }
    if (typeof rollout["salt"] === "string") {
      read.salt = rollout["salt"];
    }
    stored.rollout = read;
  }
  return stored;
}

function readRule(value: unknown): Rule {
  const fields = record(value);
  const rule: Rule = {
    when: list(fields["when"]).map((item) => {
      const condition = record(item);
      return { attribute: text(condition["attribute"]), op: text(condition["op"]), values: list(condition["values"]) as Json[] };
    }),
    serve: text(record(fields["serve"])["variant"]),
  };
  if (typeof fields["name"] === "string") {
    rule.name = fields["name"];
  }
  if (typeof fields["segment"] === "string") {
    rule.segment = fields["segment"];
  }
  return rule;
}

// The draft: every field as the text a person types.

export interface DraftCondition {
  attribute: string;
  op: string;
  values: string;
}

export interface DraftRule {
  name: string;
  segment: string;
  when: DraftCondition[];
  serve: string;
}

export interface DraftRollout {
  percentage: string;
  stickiness: string;
  salt: string;
  split: { variant: string; weight: string }[];
}

export interface Draft {
  description: string;
  type: string;
  variants: { name: string; value: string }[];
  defaultVariant: string;
  clientVisible: boolean;
  rules: DraftRule[];
  rollout: DraftRollout | null;
}

export function draftOf(flag: StoredFlag): Draft {
  return {
    description: flag.description ?? "",
    type: flag.type,
    variants: flag.variants.map(([name, value]) => ({ name, value: variantText(flag.type, value) })),
    defaultVariant: flag.defaultVariant,
    clientVisible: flag.clientVisible === true,
    rules: flag.rules.map((rule) => ({
      name: rule.name ?? "",
      segment: rule.segment ?? "",
      when: rule.when.map((condition) => ({
        attribute: condition.attribute,
        op: condition.op,
        values: condition.values.map((value) => valueLine(value, condition.op)).join("\n"),
      })),
      serve: rule.serve,
    })),
    rollout:
      flag.rollout === undefined
        ? null
        : {
            percentage: String(flag.rollout.percentage),
            stickiness: flag.rollout.stickiness ?? "",
            salt: flag.rollout.salt ?? "",
            split: flag.rollout.split.map((entry) => ({ variant: entry.variant, weight: String(entry.weight) })),
          },
  };
}

/** The flag a draft describes, as the body of `PUT .../flags/{key}`. */
export function flagOf(draft: Draft, stored: StoredFlag): Record<string, unknown> {
  // Fields left out stay out: an optional field the draft leaves empty is not written.
  const flag: Record<string, unknown> = { ...stored.rest };
  if (draft.description !== "") {
    flag["description"] = draft.description;
  }
  flag["type"] = draft.type;
  const variants: Record<string, Json> = {};
  for (const variant of draft.variants) {
    variants[variant.name] = variantValue(draft.type, variant.value);
  }
  flag["variants"] = variants;
  flag["default_variant"] = draft.defaultVariant;
  if (draft.clientVisible || stored.clientVisible !== undefined) {
    flag["client_visible"] = draft.clientVisible;
  }
  if (draft.rules.length > 0) {
    flag["rules"] = draft.rules.map((rule) => {
      const written: Record<string, unknown> = {};
      if (rule.name !== "") {
        written["name"] = rule.name;
      }
      if (rule.when.length > 0) {
        written["when"] = rule.when.map((condition) => {
          const values = valuesOf(condition.values, condition.op);
          return values.length > 0
            ? { attribute: condition.attribute, op: condition.op, values }
            : { attribute: condition.attribute, op: condition.op };
        });
      }
      if (rule.segment !== "") {
        written["segment"] = rule.segment;
      }
      written["serve"] = { variant: rule.serve };
      return written;
    });
  }
  if (draft.rollout !== null) {
    const rollout: Record<string, unknown> = {};
    if (draft.rollout.stickiness !== "") {
      rollout["stickiness"] = draft.rollout.stickiness;
    }
    rollout["percentage"] = number(draft.rollout.percentage);
    rollout["split"] = draft.rollout.split.map((entry) => ({ variant: entry.variant, weight: number(entry.weight) }));
    if (draft.rollout.salt !== "") {
      rollout["salt"] = draft.rollout.salt;
    }
    flag["rollout"] = rollout;
  }
  return flag;
}

/** A number typed as text; anything else is sent as typed, for the server to name the problem. */
function number(typed: string): number | string {
  const trimmed = typed.trim();
  const parsed = Number(trimmed);
  return trimmed !== "" && Number.isFinite(parsed) ? parsed : typed;
}

/** JSON where the text is JSON, else the text as a string. */
function literal(typed: string): Json {
  try {
    return JSON.parse(typed) as Json;
  } catch {
    return typed;
  }
}

/** A variant's value as typed: a string flag's values are plain text, the others JSON. */
export function variantText(type: string, value: Json): string {
  return type === "string" && typeof value === "string" ? value : JSON.stringify(value);
}

function variantValue(type: string, typed: string): Json {
  return type === "string" ? typed : literal(typed.trim());
}

/**
 * A condition value as one line, such that reading the line back (see `valuesOf`) gives the
 * same value: a string is written as it is when that reads back as the string, otherwise
 * quoted (`"42"` for the string 42 under `eq`, a string with spaces at its ends); every other
 * value as JSON.
 */
export function valueLine(value: Json, op: string): string {
  if (typeof value !== "string") {
    return JSON.stringify(value);
  }
  const plain = value !== "" && value.trim() === value && !value.includes("\n");
  const reads = literal(value);
  const same = TEXT_OPERATORS.has(op) ? typeof reads !== "string" || reads === value : reads === value;
  return plain && same ? value : JSON.stringify(value);
}

/**
 * Operators that compare text only. Their values are read as text even when a line would read
 * as a number, so that a version typed `2.4` stays the string it must be; a quoted line is
 * still the string inside the quotes, so a value survives a change of operator.
 */
const TEXT_OPERATORS = new Set([
  "starts_with", "ends_with", "contains", "matches",
  "semver_lt", "semver_lte", "semver_gt", "semver_gte", "semver_eq",
]);

export function valuesOf(lines: string, op: string): Json[] {
  return lines
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line) => {
      const value = literal(line);
      return TEXT_OPERATORS.has(op) && typeof value !== "string" ? line : value;
    });
}
