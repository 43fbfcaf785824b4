// The code of a screen's larger parts (the editor, the charts, the diffs) comes in chunks
// loaded when first needed. A tab opened before the server was upgraded asks for chunks
// that the new server no longer has: the failure says to reload the page, which fetches
// the new console, rather than leaving a screen half drawn with a bare network error.

/** Thrown when a chunk could not be loaded; its message tells the person what to do. */
export class ChunkError extends Error {}

export const RELOAD = "part of the console could not be loaded, perhaps because the server was upgraded: reload the page";

export async function lazy<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (failure) {
    throw new ChunkError(`${RELOAD} (${failure instanceof Error ? failure.message : String(failure)})`);
  }
}
