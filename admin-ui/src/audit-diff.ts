// An audit entry's before and after as a line diff, by the `diff` library. Loaded with
// `import()` when the first entry is shown, with the library.

import { diffJson } from "diff";
import { el } from "./dom";

/** Fills `pre` with the diff of the two items' JSON. */
export function fillDiff(pre: HTMLElement, before: unknown, after: unknown): void {
  // diffJson sorts keys, so that a field that moved is not shown as changed.
  fill(pre, diffJson(input(before), input(after)));
}

function fill(pre: HTMLElement, parts: { value: string; added?: boolean; removed?: boolean }[]): void {
  for (const part of parts) {
    const lines = part.value.replace(/\n$/, "").split("\n");
    if (part.added) {
      pre.appendChild(el("ins", {}, lines.map((line) => `+ ${line}\n`).join("")));
    } else if (part.removed) {
      pre.appendChild(el("del", {}, lines.map((line) => `- ${line}\n`).join("")));
    } else if (lines.length > 7) {
      const head = lines.slice(0, 3).map((line) => `  ${line}\n`).join("");
      const tail = lines.slice(-3).map((line) => `  ${line}\n`).join("");
      pre.appendChild(document.createTextNode(`${head}  … ${lines.length - 6} unchanged lines\n${tail}`));
    } else {
      pre.appendChild(document.createTextNode(lines.map((line) => `  ${line}\n`).join("")));
    }
  }
}

/** What diffJson compares: an object as itself (its keys sorted), nothing as no lines. */
function input(value: unknown): string | object {
  if (value === null || value === undefined) {
    return "";
  }
  return typeof value === "object" ? value : `${JSON.stringify(value)}\n`;
}
