// Writes of the flag page. A refused write keeps what the server said in full: an invalid
// flag comes back with every problem and its path, which the page shows at the field it
// names rather than as one sentence at the top.

import { adminKey, headers } from "./api";

export interface Problem {
  path: string;
  message: string;
}

export type Sent<T> =
  | { ok: true; value: T }
  | { ok: false; status: number; message: string; path: string | null; problems: Problem[] };

export async function send<T>(method: "PUT" | "POST", path: string, body: unknown): Promise<Sent<T>> {
  const key = adminKey();
  if (key === null) {
    return { ok: false, status: 401, message: "not signed in", path: null, problems: [] };
  }
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(key, { Accept: "application/json", "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
  } catch (failure) {
    return { ok: false, status: 0, message: `Could not reach the server: ${String(failure)}`, path: null, problems: [] };
  }
  let answer: unknown = null;
  try {
    answer = await response.json();
  } catch {
    // No JSON body: the status speaks for itself below.
  }
  if (response.ok) {
    return { ok: true, value: answer as T };
  }
  return refusal(response, answer);
}

function refusal(response: Response, answer: unknown): Sent<never> {
  const body = typeof answer === "object" && answer !== null ? (answer as Record<string, unknown>) : {};
  const message = typeof body["message"] === "string" ? body["message"] : `${response.status} ${response.statusText}`;
  const path = typeof body["path"] === "string" ? body["path"] : null;
  const problems: Problem[] = [];
  if (Array.isArray(body["problems"])) {
    for (const item of body["problems"] as unknown[]) {
      if (typeof item === "object" && item !== null) {
        const problem = item as Record<string, unknown>;
        if (typeof problem["path"] === "string" && typeof problem["message"] === "string") {
          problems.push({ path: problem["path"], message: problem["message"] });
        }
      }
    }
  }
  // A refusal with a path but no list (a bad request body) still has one place to point at.
  if (problems.length === 0 && path !== null) {
    problems.push({ path, message });
  }
  return { ok: false, status: response.status, message, path, problems };
}
