// The console's entry: sign-in, the shell (navigation, environment switcher, live status)
// and the routes, which live in the URL's fragment so that the server serves one page.

import {
  ApiError,
  type Environment,
  adminKey,
  forgetKey,
  getJson,
  path,
  rememberKey,
} from "./api";
import { el, replaceChildren } from "./dom";
import { type LiveEvent, type Status, follow } from "./events";
import type { Context, Screen } from "./screen";
import { PAGES, SCREENS } from "./screens";
import { describe } from "./send";

const ENVIRONMENT = "ripcord.environment";

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
            : `Could not sign in: ${describe(failure)}`;
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
  /** The screen shown. */
  screen: Screen | null;
  stop: () => void;
  /** Numbers the reads of the environments: an answer older than one shown is dropped. */
  reads: number;
  shown: number;
  /** A read asked for by live events, waiting for the burst to end. */
  pending: ReturnType<typeof setTimeout> | null;
}

/** How long a burst of live events is waited out before the environments are read once. */
const SETTLE_MS = 250;

/** The shell is left: its screen's timers and reads stop with it, and its stream closes. */
function leave(state: Shell): void {
  state.stop();
  state.screen?.close?.();
  state.screen = null;
  if (state.pending !== null) {
    clearTimeout(state.pending);
    state.pending = null;
  }
  if (current === state) {
    current = null;
  }
}

let current: Shell | null = null;

async function shell(key: string): Promise<void> {
  if (current !== null) {
    leave(current);
  }
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
    screen: null,
    stop: () => {},
    reads: 0,
    shown: 0,
    pending: null,
  };
  current = state;
  fillEnvironments(state);
  select.addEventListener("change", () => {
    state.environment = select.value;
    sessionStorage.setItem(ENVIRONMENT, state.environment);
    route();
  });
  signOut.addEventListener("click", () => {
    // The screen closes too: a ramp's timer must not go on reading with a forgotten key.
    leave(state);
    forgetKey();
    sessionStorage.removeItem(ENVIRONMENT);
    signIn();
  });
  const list = el("ul");
  for (const { id, name } of SCREENS) {
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
    void state.screen?.load();
  }
}

function onEvent(state: Shell, event: LiveEvent): void {
  if (current !== state) {
    return;
  }
  const data = (typeof event.data === "object" && event.data !== null ? event.data : {}) as {
    environment?: unknown;
  };
  if (
    event.event === "reset" ||
    event.event === "environment_deleted" ||
    (event.event === "change" && !knows(state, data.environment))
  ) {
    if (state.pending === null) {
      state.pending = setTimeout(() => {
        state.pending = null;
        void refreshEnvironments(state);
      }, SETTLE_MS);
    }
  }
  state.screen?.event?.(event);
}

function knows(state: Shell, environment: unknown): boolean {
  return state.environments.some((known) => known.name === environment);
}

async function refreshEnvironments(state: Shell): Promise<void> {
  const read = ++state.reads;
  let environments: Environment[];
  try {
    environments = await getJson<Environment[]>(path.environments, state.key);
  } catch {
    return;
  }
  if (current !== state || read < state.shown) {
    return;
  }
  state.shown = read;
  state.environments = environments;
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
  const id = parts[0] === undefined || parts[0] === "" ? "flags" : parts[0];
  // Decoded before anything is closed: a malformed fragment (`#/flags/%E0`) is a page
  // that does not exist, not an exception that leaves the console half torn down.
  let rest: string[] | null;
  try {
    rest = parts.slice(1).map((part) => decodeURIComponent(part));
  } catch {
    rest = null;
  }
  for (const link of state.nav.querySelectorAll("a")) {
    if (link.dataset["screen"] === id) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  state.screen?.close?.();
  state.screen = null;
  if (rest === null) {
    replaceChildren(state.main, el("h1", {}, "Not found"), el("p", {}, "There is no such page."));
    return;
  }
  const entry = SCREENS.find((screen) => screen.id === id);
  const open = rest.length > 0 ? PAGES[id] : entry?.open;
  if (open === undefined || open === null) {
    const name = entry?.name ?? "Not found";
    replaceChildren(state.main, el("h1", {}, name), el("p", {}, entry === undefined ? "There is no such screen." : "This screen is not built yet."));
    return;
  }
  const context: Context = {
    key: state.key,
    environment: state.environment,
    environments: state.environments,
    rest,
    refreshEnvironments: () => refreshEnvironments(state),
  };
  const screen = open(context);
  state.screen = screen;
  replaceChildren(state.main, screen.root);
  void screen.load();
}

window.addEventListener("hashchange", route);
start();
