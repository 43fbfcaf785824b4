// The Flag screen: one flag of one environment, as stored.

import { type FlagEntry, getJson, path } from "./api";
import { el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import { openRamp } from "./ramp";
import { type Context, type Screen, changeOf } from "./screen";

export function openFlag(context: Context): Screen {
  const key = context.rest.join("/");
  const root = el("section", {}, el("h1", {}, key), el("p", { role: "status" }, "Loading…"));
  const ramp = openRamp(context, key);
  let closed = false;
  const load = async (): Promise<void> => {
    try {
      const entry = await getJson<FlagEntry>(`${path.flags(context.environment)}/${encodeURIComponent(key)}`);
      if (closed) {
        return;
      }
      replaceChildren(
        root,
        el("h1", {}, entry.key),
        el("p", {}, entry.flag.enabled === false ? "Killed" : "On", ` · revision ${entry.revision}`),
        typeof entry.flag.description === "string" ? el("p", {}, entry.flag.description) : null,
        el("p", {}, "Editing is not built yet; the flag as stored:"),
        el("pre", {}, JSON.stringify(entry.flag, null, 2)),
        ramp.root,
        el("p", {}, el("a", { href: "#/flags" }, "Back to the flags")),
      );
    } catch (failure) {
      if (!closed) {
        replaceChildren(root, el("h1", {}, key), el("p", { role: "alert" }, String(failure)));
      }
    }
  };
  return {
    root,
    load: async () => {
      await Promise.all([load(), ramp.load()]);
    },
    event(event: LiveEvent) {
      ramp.event?.(event);
      const change = changeOf(event);
      // Without `flags`, any flag may have changed.
      if (change !== null && change.environment === context.environment && (change.flags === null || change.flags.includes(key))) {
        void load();
      }
    },
    close() {
      closed = true;
      ramp.close?.();
    },
  };
}
