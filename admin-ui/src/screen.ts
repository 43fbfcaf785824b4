// What every screen of the console is to the shell: a root element the shell shows, a
// load that reads the screen's data (again after the live stream reconnects), and the live
// events, which each screen filters for what concerns it.

import type { Environment } from "./api";
import type { LiveEvent } from "./events";

export interface Context {
  /** The admin key the console signed in with. */
  readonly key: string;
  /** The environment chosen in the header's Environment select. */
  readonly environment: string;
  readonly environments: readonly Environment[];
  /** The route after the screen's id, decoded: `#/flags/new-checkout` gives `["new-checkout"]`. */
  readonly rest: readonly string[];
  /** Reads the environments again, after one was created or deleted. */
  refreshEnvironments(): Promise<void>;
}

export interface Screen {
  readonly root: HTMLElement;
  /** Reads the screen's data; called when the screen opens and when the live stream reconnects. */
  load(): Promise<void>;
  /** Every live event; the screen decides whether it concerns it. */
  event?(event: LiveEvent): void;
  /** The screen is left: stop timers and pending work. */
  close?(): void;
}

export type Open = (context: Context) => Screen;

/** The environment a `change` event is about, and the flags it names (null: any may have changed). */
export function changeOf(event: LiveEvent): { environment: unknown; flags: string[] | null } | null {
  if (event.event !== "change" || typeof event.data !== "object" || event.data === null) {
    return null;
  }
  const data = event.data as { environment?: unknown; flags?: unknown };
  const flags = Array.isArray(data.flags) ? data.flags.filter((flag): flag is string => typeof flag === "string") : null;
  return { environment: data.environment, flags };
}
