// A changed flag or segment as a unified diff, by the `diff` library. Loaded with
// `import()` at the first dry run, with the library.

import { structuredPatch } from "diff";
import { el } from "./dom";

/** The diff of two texts, three lines of context: each line a span classed ins, del or same. */
export function diffElement(before: string, after: string): HTMLElement {
  const patch = structuredPatch("before", "after", before, after, "", "", { context: 3 });
  const pre = el("pre", { class: "diff" });
  for (const hunk of patch.hunks) {
    pre.appendChild(
      el("span", { class: "hunk" }, `@@ -${hunk.oldStart},${hunk.oldLines} +${hunk.newStart},${hunk.newLines} @@\n`),
    );
    for (const line of hunk.lines) {
      const sign = line.charAt(0);
      const kind = sign === "+" ? "ins" : sign === "-" ? "del" : "same";
      pre.appendChild(el("span", { class: kind }, `${line}\n`));
    }
  }
  return pre;
}
