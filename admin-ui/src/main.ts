// The console's entry: sign-in, the shell (navigation, environment switcher, live status)
// and the routes, which live in the URL's fragment so that the server serves one page.

import {
  ApiError,
  type Environment,
  type FlagEntry,
  adminKey,
  forgetKey,
  getJson,
  path,
  rememberKey,
} from "./api";
import { el, replaceChildren } from "./dom";
import { type LiveEvent, type Status, follow } from "./events";
import { FlagsScreen } from "./flags";

const ENVIRONMENT = "ripcord.environment";

const SCREENS: ReadonlyArray<readonly [string, string]> = [
  ["flags", "Flags"],
  ["incidents", "Incidents"],
  ["audit", "Audit log"],
  ["keys", "Keys"],
  ["document", "Document"],
  ["judge", "Judge"],
  ["environments", "Environments"],
];

const app = document.getElementById("app") ?? document.body;

function start(): void {
  const key = adminKey();
  if (key === null) {
    signIn();
  } else {
    void shell(key);
  }
}

function signIn(message?: string): void {
  const input = el("input", {
    id: "admin-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: "",
  });
  const error = el("p", { role: "alert", class: "error" }, message ?? "");
  const button = el("button", { type: "submit" }, "Sign in");
  const form = el(
    "form",
    { class: "sign-in" },
    el("h1", {}, "Ripcord console"),
    el("label", { for: "admin-key" }, "Admin key"),
    input,
    button,
    error,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (key === "") {
      return;
    }
    button.disabled = true;
    // The key is tried before it is kept, so a typo is said at once rather than on every
    // screen.
    getJson<Environment[]>(path.environments, key)
      .then(() => {
        rememberKey(key);
        return shell(key);
      })
      .catch((failure: unknown) => {
        button.disabled = false;
        error.textContent =
          failure instanceof ApiError && (failure.status === 401 || failure.status === 403)
            ? "That key is not an admin key of this server."
            : `Could not sign in: ${failure instanceof Error ? failure.message : String(failure)}`;
      });
  });
  replaceChildren(app, el("main", {}, form));
  input.focus();
}

interface Shell {
  key: string;
  environments: Environment[];
  environment: string;
  select: HTMLSelectElement;
  main: HTMLElement;
  live: HTMLElement;
  nav: HTMLElement;
  flags: FlagsScreen | null;
  /** The key of the flag whose page is open. */
  flag: string | null;
  stop: () => void;
}

let current: Shell | null = null;

async function shell(key: string): Promise<void> {
  let environments: Environment[];
  try {
    environments = await getJson<Environment[]>(path.environments, key);
  } catch (failure) {
    if (failure instanceof ApiError && (failure.status === 401 || failure.status === 403)) {
      forgetKey();
      signIn("The key was refused; sign in again.");
      return;
    }
    replaceChildren(app, el("p", { role: "alert" }, `Could not reach the server: ${String(failure)}`));
    return;
  }
  const select = el("select", { id: "environment" });
  const live = el("span", { class: "live", role: "status" }, "");
  const nav = el("nav", { "aria-label": "Console" });
  const main = el("main", { id: "main" });
  const signOut = el("button", { type: "button" }, "Sign out");
  const state: Shell = {
    key,
    environments,
    environment: chooseEnvironment(environments),
    select,
    main,
    live,
    nav,
    flags: null,
    flag: null,
    stop: () => {},
  };
  current = state;
  fillEnvironments(state);
  select.addEventListener("change", () => {
    state.environment = select.value;
    sessionStorage.setItem(ENVIRONMENT, state.environment);
    route();
  });
  signOut.addEventListener("click", () => {
    state.stop();
    current = null;
    forgetKey();
    sessionStorage.removeItem(ENVIRONMENT);
    signIn();
  });
  const list = el("ul");
  for (const [id, name] of SCREENS) {
    list.appendChild(el("li", {}, el("a", { href: `#/${id}`, "data-screen": id }, name)));
  }
  nav.appendChild(list);
  replaceChildren(
    app,
    el(
      "header",
      {},
      el("span", { class: "brand" }, "Ripcord"),
      el("label", { for: "environment" }, "Environment"),
      select,
      live,
      signOut,
    ),
    nav,
    main,
  );
  state.stop = follow(key, {
    event: (event) => onEvent(state, event),
    status: (status) => showStatus(state, status),
  });
  route();
}

function chooseEnvironment(environments: Environment[]): string {
  const kept = sessionStorage.getItem(ENVIRONMENT);
  if (kept !== null && environments.some((environment) => environment.name === kept)) {
    return kept;
  }
  const fallback = environments.find((environment) => environment.name === "default") ?? environments[0];
  return fallback?.name ?? "";
}

function fillEnvironments(state: Shell): void {
  replaceChildren(
    state.select,
    ...state.environments.map((environment) =>
      el("option", { value: environment.name }, environment.name),
    ),
  );
  state.select.value = state.environment;
}

function showStatus(state: Shell, status: Status): void {
  const words: Record<Status, string> = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    refused: "Live updates refused",
  };
  state.live.textContent = words[status];
  if (status === "live") {
    // Whatever happened while the stream was down is read afresh.
    void state.flags?.load();
  }
}

function onEvent(state: Shell, event: LiveEvent): void {
  if (current !== state) {
    return;
  }
  const data = (typeof event.data === "object" && event.data !== null ? event.data : {}) as {
    environment?: unknown;
    flags?: unknown;
  };
  if (event.event === "reset") {
    void refreshEnvironments(state);
    void state.flags?.load();
  } else if (event.event === "environment_deleted" || (event.event === "change" && !knows(state, data.environment))) {
    void refreshEnvironments(state);
  } else if (event.event === "change" && data.environment === state.environment) {
    void state.flags?.load();
    const key = state.flag;
    // Without `flags`, any flag may have changed.
    if (key !== null && (!Array.isArray(data.flags) || data.flags.includes(key))) {
      void flagPage(state, key, true);
    }
  }
}

function knows(state: Shell, environment: unknown): boolean {
  return state.environments.some((known) => known.name === environment);
}

async function refreshEnvironments(state: Shell): Promise<void> {
  try {
    state.environments = await getJson<Environment[]>(path.environments, state.key);
  } catch {
    return;
  }
  const before = state.environment;
  state.environment = chooseEnvironment(state.environments);
  if (state.environments.some((environment) => environment.name === before)) {
    state.environment = before;
  }
  fillEnvironments(state);
  if (before !== state.environment) {
    route();
  }
}

function route(): void {
  const state = current;
  if (state === null) {
    return;
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const screen = parts[0] === undefined || parts[0] === "" ? "flags" : parts[0];
  for (const link of state.nav.querySelectorAll("a")) {
    if (link.dataset["screen"] === screen) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  state.flags = null;
  state.flag = null;
  if (screen === "flags" && parts.length > 1) {
    void flagPage(state, decodeURIComponent(parts.slice(1).join("/")));
    return;
  }
  if (screen === "flags") {
    const flags = new FlagsScreen(state.environment);
    state.flags = flags;
    replaceChildren(state.main, flags.root);
    void flags.load();
    return;
  }
  const name = SCREENS.find(([id]) => id === screen)?.[1] ?? "Not found";
  replaceChildren(state.main, el("h1", {}, name), el("p", {}, "This screen is not built yet."));
}

async function flagPage(state: Shell, key: string, refresh = false): Promise<void> {
  state.flag = key;
  if (!refresh) {
    replaceChildren(state.main, el("h1", {}, key), el("p", { role: "status" }, "Loading…"));
  }
  const environment = state.environment;
  // An answer that arrives after the person moved on is dropped.
  const stillOpen = () => state.flag === key && state.environment === environment;
  try {
    const entry = await getJson<FlagEntry>(`${path.flags(environment)}/${encodeURIComponent(key)}`);
    if (!stillOpen()) {
      return;
    }
    replaceChildren(
      state.main,
      el("h1", {}, entry.key),
      el("p", {}, entry.flag.enabled === false ? "Killed" : "On", ` · revision ${entry.revision}`),
      typeof entry.flag.description === "string" ? el("p", {}, entry.flag.description) : null,
      el("p", {}, "Editing is not built yet; the flag as stored:"),
      el("pre", {}, JSON.stringify(entry.flag, null, 2)),
      el("p", {}, el("a", { href: "#/flags" }, "Back to the flags")),
    );
  } catch (failure) {
    if (stillOpen()) {
      replaceChildren(state.main, el("h1", {}, key), el("p", { role: "alert" }, String(failure)));
    }
  }
}

window.addEventListener("hashchange", route);
start();
