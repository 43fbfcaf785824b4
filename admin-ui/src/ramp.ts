// The ramp section of a flag page.

import { el } from "./dom";
import type { Context, Screen } from "./screen";

/** The flag's ramp, shown inside its page; the page passes on its load and live events. */
export function openRamp(_context: Context, _key: string): Screen {
  const root = el("section", { "aria-labelledby": "ramp-heading" }, el("h2", { id: "ramp-heading" }, "Ramp"), el("p", {}, "Not built yet."));
  return {
    root,
    load: async () => {},
  };
}
