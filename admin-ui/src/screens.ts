// The console's screens, in the order of the navigation. A screen not built yet has no
// `open`; `#/flags/<key>` opens the flag page.

import { openDocument } from "./document";
import { openFlag } from "./flag";
import { openFlags } from "./flags";
import { openJudge } from "./judge";
import type { Open } from "./screen";

export interface ScreenEntry {
  readonly id: string;
  readonly name: string;
  readonly open: Open | null;
}

export const SCREENS: readonly ScreenEntry[] = [
  { id: "flags", name: "Flags", open: openFlags },
  { id: "incidents", name: "Incidents", open: null },
  { id: "audit", name: "Audit log", open: null },
  { id: "keys", name: "Keys", open: null },
  { id: "document", name: "Document", open: openDocument },
  { id: "judge", name: "Judge", open: openJudge },
  { id: "environments", name: "Environments", open: null },
];

/** Pages under a screen's route: `#/flags/<key>`. */
export const PAGES: Readonly<Record<string, Open>> = {
  flags: openFlag,
};
