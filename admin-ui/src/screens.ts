// The console's screens, in the order of the navigation. A screen not built yet has no
// `open`; `#/flags/<key>` opens the flag page.

import { openAudit } from "./audit";
import { openDocument } from "./document";
import { openEnvironments } from "./environments";
import { openFlag } from "./flag";
import { openFlags } from "./flags";
import { openIncident, openIncidents } from "./incidents";
import { openJudge } from "./judge";
import { openKeys } from "./keys";
import type { Open } from "./screen";

export interface ScreenEntry {
  readonly id: string;
  readonly name: string;
  readonly open: Open | null;
}

export const SCREENS: readonly ScreenEntry[] = [
  { id: "flags", name: "Flags", open: openFlags },
  { id: "incidents", name: "Incidents", open: openIncidents },
  { id: "audit", name: "Audit log", open: openAudit },
  { id: "keys", name: "Keys", open: openKeys },
  { id: "document", name: "Document", open: openDocument },
  { id: "judge", name: "Judge", open: openJudge },
  { id: "environments", name: "Environments", open: openEnvironments },
];

/** Pages under a screen's route: `#/flags/<key>` and `#/incidents/<id>`. */
export const PAGES: Readonly<Record<string, Open>> = {
  flags: openFlag,
  incidents: openIncident,
};
