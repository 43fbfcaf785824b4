// Every call of the console goes to the admin API with the key as a bearer token. The key
// lives in sessionStorage only: it is gone when the tab closes, and never travels as a
// cookie that another site could make the browser send.

const KEY = "ripcord.adminKey";

export function adminKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function rememberKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY);
}

/** An answer other than 2xx, with the server's message when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function headers(key: string, extra: Record<string, string> = {}): Headers {
  const result = new Headers(extra);
  result.set("Authorization", `Bearer ${key}`);
  return result;
}

export async function getJson<T>(path: string, key = adminKey()): Promise<T> {
  if (key === null) {
    throw new ApiError(401, "not signed in");
  }
  const response = await fetch(path, { headers: headers(key, { Accept: "application/json" }) });
  if (!response.ok) {
    throw new ApiError(response.status, await errorMessage(response));
  }
  return (await response.json()) as T;
}

/** The server's message for a refused request, or the status when it sent none. */
export async function errorMessage(response: Response): Promise<string> {
  try {
    const body: unknown = await response.json();
    if (typeof body === "object" && body !== null && "message" in body) {
      return String((body as { message: unknown }).message);
    }
  } catch {
    // Not JSON: the status says enough.
  }
  return `${response.status} ${response.statusText}`;
}

export interface Environment {
  name: string;
  revision: number;
  created_at: string;
}

export interface Flag {
  type?: string;
  enabled?: boolean;
  description?: string;
  rollout?: { percentage?: number };
  [field: string]: unknown;
}

export interface FlagEntry {
  key: string;
  revision: number;
  flag: Flag;
}

export interface AuditEntry {
  id: number;
  time: string;
  actor: string;
  environment: string | null;
  action: string;
  target: string;
  reason?: string;
}

export interface AuditPage {
  entries: AuditEntry[];
  next: number | null;
}

/** The judge's answer (`POST /api/v1/judge`). */
export interface Verdict {
  n_treatment: number;
  n_control: number;
  u: number;
  u2: number;
  z?: number;
  p_value: number;
  method: string;
  alternative: string;
  hodges_lehmann: { estimate: number; ci: [number, number]; confidence: number };
  medians: { treatment: number; control: number };
  verdict: "PASS" | "REGRESSION" | "INCONCLUSIVE";
  effect?: {
    measure: "shift" | "rate_difference";
    estimate: number;
    worse_bound: number;
    control_level: number;
    tolerance: number;
  };
}

export const path = {
  environments: "/api/v1/environments",
  flags: (environment: string) =>
    `/api/v1/environments/${encodeURIComponent(environment)}/flags`,
  audit: (environment: string) =>
    `/api/v1/audit?environment=${encodeURIComponent(environment)}&limit=500`,
  events: "/api/v1/events",
};
