// The Flag screen: one flag of one environment. Its state and kill switch, its definition
// (shown, and edited in a form the server validates), its ramp, and the evaluation
// playground. The page's parts are built once and updated in place, so a live change does
// not throw away an open form, a typed context or the focus.

import { type FlagEntry, getJson, path } from "./api";
import { el, replaceChildren } from "./dom";
import type { LiveEvent } from "./events";
import { FlagEditor } from "./flag-edit";
import { confirmWithReason } from "./flag-kill";
import { Playground } from "./flag-playground";
import { send } from "./flag-send";
import { openRamp } from "./ramp";
import { type Context, type Screen, changeOf } from "./screen";
import { describe } from "./send";

export function openFlag(context: Context): Screen {
  return new FlagPage(context);
}

class FlagPage implements Screen {
  readonly root: HTMLElement;
  private readonly key: string;
  private readonly flagPath: string;
  /** The state line, right after the `h1`: "On" or "Killed", and the revision. */
  private readonly state: HTMLElement;
  private readonly actions: HTMLElement;
  private readonly status: HTMLElement;
  private readonly editor: FlagEditor;
  private readonly playground: Playground;
  private readonly ramp: Screen;
  private entry: FlagEntry | null = null;
  /** Loads answer out of order under a burst of changes; only the newest is shown. */
  private asked = 0;
  private closed = false;

  constructor(private readonly context: Context) {
    this.key = context.rest.join("/");
    this.flagPath = `${path.flags(context.environment)}/${encodeURIComponent(this.key)}`;
    this.state = el("p", { class: "flag-state" });
    this.actions = el("div", { class: "buttons" });
    this.status = el("div", { role: "status", class: "status" }, "Loading…");
    this.editor = new FlagEditor(this.key, this.flagPath, (entry) => {
      this.status.textContent = `Saved: revision ${entry.revision}.`;
      this.show(entry);
    });
    this.playground = new Playground(context.environment, this.key);
    this.ramp = openRamp(context, this.key);
    this.root = el("section", { class: "flag-page" }, el("h1", {}, this.key), this.status);
  }

  async load(): Promise<void> {
    await Promise.all([this.loadFlag(), this.ramp.load()]);
  }

  private async loadFlag(): Promise<void> {
    this.asked += 1;
    const asked = this.asked;
    try {
      const entry = await getJson<FlagEntry>(this.flagPath);
      // A load that set off before a save or a kill may answer after it: never step back.
      const older = this.entry !== null && entry.revision < this.entry.revision;
      if (!this.closed && asked === this.asked && !older) {
        this.show(entry);
      }
    } catch (failure) {
      if (!this.closed && asked === this.asked) {
        this.status.setAttribute("role", "alert");
        this.status.textContent = `Could not load the flag: ${describe(failure)}`;
      }
    }
  }

  private show(entry: FlagEntry): void {
    const first = this.entry === null;
    this.entry = entry;
    const killed = entry.flag.enabled === false;
    replaceChildren(
      this.state,
      el("span", { class: killed ? "killed" : "on" }, killed ? "Killed" : "On"),
      ` · revision ${entry.revision}`,
    );
    this.showActions(killed);
    this.editor.show(entry);
    if (first) {
      this.status.setAttribute("role", "status");
      if (this.status.textContent === "Loading…") {
        this.status.textContent = "";
      }
      replaceChildren(
        this.root,
        el("h1", {}, entry.key),
        this.state,
        this.actions,
        this.status,
        this.editor.root,
        this.ramp.root,
        this.playground.root,
        el("p", {}, el("a", { href: "#/flags" }, "Back to the flags")),
      );
    }
  }

  private showActions(killed: boolean): void {
    const current = this.actions.querySelector("button");
    const name = killed ? "Turn on" : "Kill";
    if (current?.textContent === name) {
      return;
    }
    const hadFocus = current !== null && current === document.activeElement;
    const button = el("button", { type: "button", class: killed ? undefined : "danger" }, name);
    button.addEventListener("click", () => (killed ? this.turnOn() : this.kill()));
    replaceChildren(this.actions, button);
    if (hadFocus) {
      button.focus();
    }
  }

  private kill(): void {
    confirmWithReason(this.root, {
      title: `Kill ${this.key}?`,
      text: `Everyone gets the default variant of ${this.key} from the next evaluation on, with reason DISABLED, until the flag is turned on again.`,
      confirm: "Kill flag",
      danger: true,
      run: (reason) => this.setEnabled(false, reason),
      closed: () => this.actions.querySelector("button")?.focus(),
    });
  }

  private turnOn(): void {
    confirmWithReason(this.root, {
      title: `Turn ${this.key} on?`,
      text: `${this.key} is served by its rules and rollout again from the next evaluation on.`,
      confirm: "Turn flag on",
      danger: false,
      run: (reason) => this.setEnabled(true, reason),
      closed: () => this.actions.querySelector("button")?.focus(),
    });
  }

  private async setEnabled(enabled: boolean, reason: string): Promise<string | null> {
    const body: { enabled: boolean; reason?: string } = { enabled };
    if (reason !== "") {
      body.reason = reason;
    }
    const sent = await send<FlagEntry>("PUT", `${this.flagPath}/enabled`, body);
    if (!sent.ok) {
      return `Not done: ${sent.message}`;
    }
    this.status.textContent = enabled ? `${this.key} is on.` : `${this.key} is killed.`;
    if (!this.closed) {
      this.show(sent.value);
    }
    return null;
  }

  event(event: LiveEvent): void {
    this.ramp.event?.(event);
    const change = changeOf(event);
    if (event.event === "reset") {
      void this.loadFlag();
      this.playground.changed();
      return;
    }
    if (change === null || change.environment !== this.context.environment) {
      return;
    }
    this.playground.changed();
    // Without `flags`, any flag may have changed.
    if (change.flags === null || change.flags.includes(this.key)) {
      void this.loadFlag();
    }
  }

  close(): void {
    this.closed = true;
    this.ramp.close?.();
  }
}
