// The Document screen: the environment's whole document exported as YAML (a download, and
// the text in the editor), and an import tried first — a dry run shows every flag and
// segment it would add, change or remove, or every problem at its place — then applied.

import { ApiError, adminKey, headers } from "./api";
import { ChunkError, lazy } from "./chunk";
import { el, replaceChildren } from "./dom";
import type { Editor, Problem } from "./document-editor";
import type { LiveEvent } from "./events";
import { type Context, type Screen, changeOf } from "./screen";
import { describe } from "./send";

interface Change {
  key: string;
  before?: unknown;
  after?: unknown;
}

interface Changes {
  added: Change[];
  changed: Change[];
  removed: Change[];
  unchanged: number;
}

export interface DryRun {
  dry_run: boolean;
  revision: number;
  changes: boolean;
  flags: Changes;
  segments: Changes;
}

interface ImportSummary {
  revision: number;
  flags: number;
  segments: number;
}

/** A refused import: the server's message and, for an invalid document, every problem. */
class Refused extends Error {
  constructor(
    message: string,
    readonly problems: Problem[],
  ) {
    super(message);
  }
}

/** An import refused because the environment is no longer at the dry run's revision. */
class Stale extends Error {}

type Diff = typeof import("./document-diff").diffElement;

export function openDocument(context: Context): Screen {
  return new DocumentScreen(context.environment);
}

function documentPath(environment: string): string {
  return `/api/v1/environments/${encodeURIComponent(environment)}/document`;
}

function key(): string {
  const value = adminKey();
  if (value === null) {
    throw new ApiError(401, "not signed in");
  }
  return value;
}

/** The exported text and the revision it was read at (null from a server that does not say). */
async function exported(environment: string, format: "yaml" | "json"): Promise<{ text: string; revision: number | null }> {
  const response = await fetch(`${documentPath(environment)}?format=${format}`, {
    headers: headers(key(), { Accept: format === "yaml" ? "application/yaml" : "application/json" }),
  });
  if (!response.ok) {
    throw new ApiError(response.status, await refusal(response).then((refused) => refused.message));
  }
  const revision = Number.parseInt(response.headers.get("Ripcord-Revision") ?? "", 10);
  return { text: await response.text(), revision: Number.isSafeInteger(revision) ? revision : null };
}

async function refusal(response: Response): Promise<Refused> {
  try {
    const body = (await response.json()) as { message?: unknown; path?: unknown; problems?: unknown };
    const problems: Problem[] = Array.isArray(body.problems)
      ? body.problems.map((problem: { path?: unknown; message?: unknown }) => ({
          path: typeof problem.path === "string" ? problem.path : "",
          message: typeof problem.message === "string" ? problem.message : String(problem.message),
        }))
      : [];
    const message = typeof body.message === "string" ? body.message : `${response.status} ${response.statusText}`;
    if (problems.length === 0 && typeof body.path === "string" && body.path !== "") {
      problems.push({ path: body.path, message });
    }
    return new Refused(message, problems);
  } catch {
    return new Refused(`${response.status} ${response.statusText}`, []);
  }
}

async function put<T>(environment: string, text: string, dryRun: boolean, expectedRevision?: number): Promise<T> {
  const query = new URLSearchParams();
  if (dryRun) {
    query.set("dry_run", "true");
  }
  if (expectedRevision !== undefined) {
    query.set("expected_revision", String(expectedRevision));
  }
  const search = query.toString();
  const response = await fetch(`${documentPath(environment)}${search === "" ? "" : `?${search}`}`, {
    method: "PUT",
    headers: headers(key(), { "Content-Type": "application/yaml", Accept: "application/json" }),
    body: text,
  });
  if (!response.ok) {
    const refused = await refusal(response);
    throw response.status === 409 ? new Stale(refused.message) : refused;
  }
  return (await response.json()) as T;
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** "2 added, 1 changed, 0 removed, 4 unchanged". */
export function summary(changes: Changes): string {
  return `${changes.added.length} added, ${changes.changed.length} changed, ${changes.removed.length} removed, ${changes.unchanged} unchanged`;
}

function pretty(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

class DocumentScreen implements Screen {
  readonly root: HTMLElement;
  private readonly editorHost: HTMLElement;
  private readonly status: HTMLElement;
  private readonly results: HTMLElement;
  private readonly revision: HTMLElement;
  private readonly dialog: HTMLDialogElement;
  private readonly dialogSummary: HTMLElement;
  private readonly buttons: HTMLButtonElement[];
  private editor: Editor | null = null;
  private diffElement: Diff | null = null;
  private closed = false;
  /** The text the confirmed dry run saw, and the revision it compared it with. */
  private confirmed: { text: string; revision: number } | null = null;
  /** The load running now; calls meanwhile make at most one more, after it. */
  private loading: Promise<void> | null = null;
  private again = false;
  private againForced = false;

  constructor(private readonly environment: string) {
    const downloadYaml = el("button", { type: "button" }, "Download YAML");
    const downloadJson = el("button", { type: "button" }, "Download JSON");
    downloadYaml.addEventListener("click", () => void this.download("yaml"));
    downloadJson.addEventListener("click", () => void this.download("json"));
    const reload = el("button", { type: "button" }, "Reload current document");
    reload.addEventListener("click", () => void this.load(true));
    const file = el("input", { type: "file", id: "document-file", accept: ".yaml,.yml,.json,application/yaml,application/json,text/yaml" });
    file.addEventListener("change", () => void this.open(file));
    const dryRun = el("button", { type: "button" }, "Dry run");
    dryRun.addEventListener("click", () => void this.dryRun());
    const apply = el("button", { type: "button", class: "danger" }, "Apply");
    apply.addEventListener("click", () => void this.confirm());
    this.buttons = [dryRun, apply];

    this.revision = el("span", {});
    this.editorHost = el("div", { class: "yaml-editor" });
    this.status = el("p", { role: "status", class: "status" }, "Loading…");
    this.results = el("div", { class: "import-results" });

    const confirm = el("button", { type: "button", class: "danger" }, "Apply import");
    const cancel = el("button", { type: "button" }, "Cancel");
    this.dialogSummary = el("div", {});
    this.dialog = el(
      "dialog",
      { "aria-labelledby": "apply-heading" },
      el("h2", { id: "apply-heading" }, `Replace the document of ${environment}?`),
      this.dialogSummary,
      el("p", {}, "Flags and segments missing from the document are deleted. The import is one new revision, recorded in the audit log."),
      el("p", { class: "actions" }, confirm, " ", cancel),
    );
    confirm.addEventListener("click", () => void this.apply());
    cancel.addEventListener("click", () => this.dialog.close());

    this.root = el(
      "section",
      { "aria-labelledby": "document-heading", class: "document" },
      el("h1", { id: "document-heading" }, "Document"),
      el(
        "p",
        {},
        `Every flag and segment of ${environment}, as one document. Export it, or edit it here and import it: a dry run shows what would change before anything does.`,
      ),
      el("h2", {}, "Export"),
      el("p", { class: "actions" }, downloadYaml, " ", downloadJson, " ", this.revision),
      el("h2", {}, "Import"),
      el(
        "p",
        { class: "actions" },
        el("label", { for: "document-file" }, "Open a file"),
        " ",
        file,
        " ",
        reload,
      ),
      el(
        "div",
        { class: "workspace" },
        el("div", {}, this.editorHost, el("p", { class: "actions" }, dryRun, " ", apply), this.status),
        this.results,
      ),
      this.dialog,
    );
  }

  event(event: LiveEvent): void {
    const change = changeOf(event);
    if (event.event === "reset" || (change !== null && change.environment === this.environment)) {
      // Text being edited is never replaced under the person's hands.
      void this.load(false);
    }
  }

  close(): void {
    this.closed = true;
    if (this.dialog.open) {
      this.dialog.close();
    }
  }

  /**
   * Reads the document into the editor, unless it holds edits and `force` is false. A burst
   * of changes makes one read in flight and at most one after it, each answer newer than the
   * last; the promise settles once the reads asked for so far are done.
   */
  load(force = false): Promise<void> {
    this.again = true;
    this.againForced ||= force;
    if (this.loading === null) {
      this.loading = (async () => {
        try {
          while (this.again && !this.closed) {
            const forced = this.againForced;
            this.again = false;
            this.againForced = false;
            await this.loadOnce(forced);
          }
        } finally {
          this.loading = null;
        }
      })();
    }
    return this.loading;
  }

  private async loadOnce(force: boolean): Promise<void> {
    try {
      // The editor's code and the document are fetched at once: no waterfall. The revision
      // comes with the text, from the same answer, so the label names the text's revision.
      const [module, { text, revision }] = await Promise.all([lazy(() => import("./document-editor")), exported(this.environment, "yaml")]);
      if (this.closed) {
        return;
      }
      if (this.editor === null) {
        this.editor = module.createEditor(this.editorHost, "Document YAML", () => this.edited());
      }
      // The export's revision, as the Download buttons beside it would give it now.
      this.revision.textContent = revision === null ? "" : `Revision ${revision} of ${this.environment}`;
      if (!force && text === this.editor.text()) {
        return;
      }
      if (this.editor.edited() && !force) {
        this.status.textContent = `${this.environment} changed (revision ${revision ?? "?"}); your edits are kept. Reload current document to see it.`;
        return;
      }
      this.editor.setText(text);
      replaceChildren(this.results);
      this.status.textContent = `The document of ${this.environment}${revision === null ? "" : ` at revision ${revision}`}.`;
    } catch (error) {
      this.status.textContent = `Could not load the document: ${describe(error)}`;
    }
  }

  private edited(): void {
    // A result shown for other text would mislead.
    if (this.results.firstChild !== null) {
      replaceChildren(this.results);
      this.status.textContent = "Edited: run a dry run to see what the import would change.";
    }
  }

  private async open(input: HTMLInputElement): Promise<void> {
    const file = input.files?.[0];
    if (file === undefined || this.editor === null) {
      return;
    }
    try {
      // Kept like edits: a change to the environment does not replace the file's text.
      this.editor.setText(await file.text(), true);
      this.status.textContent = `Opened ${file.name}: run a dry run to see what importing it would change.`;
      replaceChildren(this.results);
    } catch (error) {
      this.status.textContent = `Could not read ${file.name}: ${describe(error)}`;
    }
    input.value = "";
  }

  private async download(format: "yaml" | "json"): Promise<void> {
    try {
      const { text } = await exported(this.environment, format);
      const url = URL.createObjectURL(
        new Blob([text], { type: format === "yaml" ? "application/yaml" : "application/json" }),
      );
      const link = el("a", { href: url, download: `${this.environment}.${format}` });
      document.body.appendChild(link);
      link.click();
      link.remove();
      // The click has started the download by the next task.
      setTimeout(() => URL.revokeObjectURL(url), 0);
    } catch (error) {
      this.status.textContent = `Could not export: ${describe(error)}`;
    }
  }

  private busy(busy: boolean): void {
    for (const button of this.buttons) {
      button.disabled = busy;
    }
  }

  /** Runs a dry run of the editor's text and shows its outcome; the outcome, or null on a refusal. */
  private async dryRun(): Promise<DryRun | null> {
    if (this.editor === null) {
      return null;
    }
    this.busy(true);
    this.status.textContent = "Checking…";
    try {
      const [result, diff] = await Promise.all([
        put<DryRun>(this.environment, this.editor.text(), true),
        this.diffElement ?? lazy(() => import("./document-diff")).then((module) => module.diffElement),
      ]);
      this.diffElement = diff;
      this.editor.mark([]);
      this.showChanges(result, diff);
      return result;
    } catch (error) {
      this.showRefusal(error);
      return null;
    } finally {
      this.busy(false);
    }
  }

  private showRefusal(error: unknown): void {
    if (!(error instanceof Refused) || error.problems.length === 0) {
      this.status.textContent =
        error instanceof ChunkError ? `Could not show the dry run: ${error.message}` : `The import was refused: ${describe(error)}`;
      replaceChildren(this.results);
      this.editor?.mark([]);
      return;
    }
    const editor = this.editor;
    editor?.mark(error.problems);
    this.status.textContent = `The document has ${plural(error.problems.length, "problem")}; nothing was changed.`;
    const list = el("ul", { class: "problems" });
    for (const problem of error.problems) {
      const line = editor?.lineOf(problem) ?? null;
      const place = el("code", { class: "path" }, problem.path === "" ? "(the document)" : problem.path);
      const item = el("li", { "data-path": problem.path }, place, ": ", el("span", { class: "message" }, problem.message));
      if (line !== null && editor !== undefined && editor !== null) {
        const go = el("button", { type: "button", class: "link" }, `line ${line}`);
        go.addEventListener("click", () => editor.focusLine(line));
        item.append(" (", go, ")");
      }
      list.appendChild(item);
    }
    replaceChildren(this.results, el("h2", {}, "Problems"), list);
  }

  private showChanges(result: DryRun, diff: Diff): void {
    this.status.textContent = result.changes
      ? `Dry run against revision ${result.revision}: flags ${summary(result.flags)}; segments ${summary(result.segments)}. Nothing was changed.`
      : `Dry run against revision ${result.revision}: the import would change nothing.`;
    const sections: HTMLElement[] = [];
    for (const [kind, changes] of [
      ["Flags", result.flags],
      ["Segments", result.segments],
    ] as const) {
      const groups: [string, Change[], (change: Change) => HTMLElement][] = [
        ["added", changes.added, (change) => this.whole(change.key, change.after, "added")],
        ["changed", changes.changed, (change) => this.changed(change, diff)],
        ["removed", changes.removed, (change) => this.whole(change.key, change.before, "removed")],
      ];
      for (const [word, list, show] of groups) {
        if (list.length === 0) {
          continue;
        }
        sections.push(
          el(
            "section",
            { class: `changes ${word}`, "aria-label": `${kind} ${word}` },
            el("h3", {}, `${kind} ${word} (${list.length})`),
            ...list.map(show),
          ),
        );
      }
    }
    replaceChildren(this.results, el("h2", {}, "What the import would change"), ...sections);
  }

  /** An added or removed item: its key, and the whole item on demand. */
  private whole(key: string, value: unknown, word: string): HTMLElement {
    return el(
      "details",
      { class: word, "data-key": key },
      el("summary", {}, el("code", {}, key)),
      el("pre", {}, pretty(value)),
    );
  }

  /** A changed item: a unified diff of its JSON before and after. */
  private changed(change: Change, diff: Diff): HTMLElement {
    return el(
      "details",
      { class: "changed", open: "", "data-key": change.key },
      el("summary", {}, el("code", {}, change.key)),
      diff(pretty(change.before), pretty(change.after)),
    );
  }

  /** Apply: a fresh dry run says what will change, and the person confirms that. */
  private async confirm(): Promise<void> {
    const text = this.editor?.text() ?? "";
    const result = await this.dryRun();
    if (result === null) {
      return;
    }
    this.confirmed = { text, revision: result.revision };
    if (!result.changes) {
      this.status.textContent = "The import would change nothing: there is nothing to apply.";
      return;
    }
    replaceChildren(
      this.dialogSummary,
      el("p", {}, `Flags: ${summary(result.flags)}.`),
      el("p", {}, `Segments: ${summary(result.segments)}.`),
    );
    this.dialog.showModal();
  }

  private async apply(): Promise<void> {
    this.dialog.close();
    const confirmed = this.confirmed;
    this.confirmed = null;
    if (this.editor === null || confirmed === null) {
      return;
    }
    this.busy(true);
    this.status.textContent = "Importing…";
    try {
      // What the person confirmed, and only onto the revision the dry run compared it with:
      // a change landing while the dialog was open is not overwritten unseen.
      const imported = await put<ImportSummary>(this.environment, confirmed.text, false, confirmed.revision);
      await this.load(true);
      this.status.textContent = `Imported into ${this.environment}: revision ${imported.revision}, ${plural(imported.flags, "flag")}, ${plural(imported.segments, "segment")}.`;
    } catch (error) {
      if (error instanceof Stale) {
        replaceChildren(this.results);
        this.status.textContent = `The environment changed since the dry run: run it again. Nothing was imported (${error.message}).`;
      } else {
        this.showRefusal(error);
      }
    } finally {
      this.busy(false);
    }
  }
}
