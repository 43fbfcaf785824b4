// The live event stream, read with fetch() because EventSource cannot send the
// Authorization header that /api/v1/events requires. The parser follows the server-sent
// events format; reconnects send Last-Event-ID so that nothing in between is lost.

import { headers, path } from "./api";

export interface LiveEvent {
  event: string;
  id: string | null;
  data: unknown;
}

export type Status = "connecting" | "live" | "reconnecting" | "refused";

export interface Handlers {
  event(event: LiveEvent): void;
  status(status: Status): void;
}

/** Opens the stream and keeps it open until the returned function is called. */
export function follow(key: string, handlers: Handlers): () => void {
  const stop = new AbortController();
  let lastEventId: string | null = null;
  let retry = 1000;

  const run = async (): Promise<void> => {
    handlers.status("connecting");
    while (!stop.signal.aborted) {
      try {
        const extra: Record<string, string> = { Accept: "text/event-stream" };
        if (lastEventId !== null) {
          extra["Last-Event-ID"] = lastEventId;
        }
        const response = await fetch(path.events, {
          headers: headers(key, extra),
          signal: stop.signal,
          cache: "no-store",
        });
        if (response.status === 401 || response.status === 403) {
          handlers.status("refused");
          return;
        }
        if (!response.ok || response.body === null) {
          throw new Error(`${response.status}`);
        }
        handlers.status("live");
        retry = 1000;
        await read(response.body, (event) => {
          if (event.id !== null) {
            lastEventId = event.id;
          }
          handlers.event(event);
        });
      } catch {
        // A dropped connection or a server that is restarting: try again below.
      }
      if (stop.signal.aborted) {
        return;
      }
      handlers.status("reconnecting");
      await sleep(retry, stop.signal);
      retry = Math.min(retry * 2, 10_000);
    }
  };
  void run();
  return () => stop.abort();
}

async function read(
  body: ReadableStream<Uint8Array>,
  emit: (event: LiveEvent) => void,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let lines: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      return;
    }
    // `stream: true` keeps a character split between two chunks whole.
    buffer += decoder.decode(value, { stream: true });
    // A line ends in \n, \r\n or \r; a \r at the end of what has arrived may be the first
    // half of a \r\n, so it waits for the next chunk.
    let end: RegExpExecArray | null;
    while ((end = /\r\n|\n|\r(?!$)/.exec(buffer)) !== null) {
      const line = buffer.slice(0, end.index);
      buffer = buffer.slice(end.index + end[0].length);
      if (line !== "") {
        lines.push(line);
        continue;
      }
      // A blank line ends an event.
      const event = parse(lines.join("\n"));
      lines = [];
      if (event !== null) {
        emit(event);
      }
    }
  }
}

export function parse(block: string): LiveEvent | null {
  let event = "message";
  let id: string | null = null;
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) {
      continue;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    if (field === "event") {
      event = value;
    } else if (field === "data") {
      data.push(value);
    } else if (field === "id") {
      id = value;
    }
  }
  if (data.length === 0) {
    return null;
  }
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return null;
  }
  return { event, id, data: parsed };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
