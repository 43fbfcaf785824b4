// The Document screen's YAML editor, CodeMirror 6. This module is loaded with `import()`
// when the screen opens, so its weight is not part of the console's first load.

import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { yaml } from "@codemirror/lang-yaml";
import {
  bracketMatching,
  defaultHighlightStyle,
  ensureSyntaxTree,
  indentOnInput,
  syntaxHighlighting,
} from "@codemirror/language";
import { type Diagnostic, lintGutter, setDiagnostics } from "@codemirror/lint";
import { EditorState, type Text } from "@codemirror/state";
import {
  EditorView,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import type { SyntaxNode, Tree } from "@lezer/common";

export interface Problem {
  path: string;
  message: string;
}

export interface Editor {
  text(): string;
  /** Replaces the text; `edited` says whether it counts as edits (a file opened does). */
  setText(text: string, edited?: boolean): void;
  /** Whether the text was changed by hand since the last `setText`. */
  edited(): boolean;
  /** Marks each problem at the line its path points to; an empty list clears the marks. */
  mark(problems: readonly Problem[]): void;
  /** The line (1-based) a problem's path points to, or null when it cannot be found. */
  lineOf(problem: Problem): number | null;
  focusLine(line: number): void;
}

const THEME = EditorView.theme({
  "&": { height: "26rem", border: "1px solid #d0d7de", backgroundColor: "#fff" },
  ".cm-scroller": { overflow: "auto", fontFamily: "ui-monospace, monospace" },
});

export function createEditor(host: HTMLElement, label: string, onEdit: () => void): Editor {
  let edited = false;
  let replacing = false;
  // CodeMirror adds its styles at run time. In a document it would add a <style> element,
  // which the console's Content-Security-Policy (no inline styles) blocks; in a shadow root
  // it adopts constructed style sheets, which the policy allows. Open, so that tests and
  // assistive tools reach the text.
  const root = host.attachShadow({ mode: "open" });
  const view = new EditorView({
    parent: root,
    root,
    state: EditorState.create({
      doc: "",
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        highlightActiveLine(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        yaml(),
        lintGutter(),
        THEME,
        // Tab indents, as YAML needs; Escape then Tab leaves the editor, so the page stays
        // usable by keyboard alone.
        keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
        EditorView.contentAttributes.of({ "aria-label": label }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged && !replacing) {
            edited = true;
            onEdit();
          }
        }),
      ],
    }),
  });

  const lineOf = (problem: Problem): number | null => {
    const state = view.state;
    const tree = ensureSyntaxTree(state, state.doc.length, 500);
    const found = tree === null ? null : locate(tree, state.doc, problem.path);
    if (found !== null) {
      return state.doc.lineAt(found).number;
    }
    return lineInMessage(problem.message, state.doc.lines);
  };

  return {
    text: () => view.state.doc.toString(),
    setText(text: string, asEdited = false) {
      replacing = true;
      try {
        view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
        view.dispatch(setDiagnostics(view.state, []));
      } finally {
        replacing = false;
      }
      edited = asEdited;
    },
    edited: () => edited,
    mark(problems: readonly Problem[]) {
      const diagnostics: Diagnostic[] = [];
      for (const problem of problems) {
        const line = lineOf(problem);
        // A problem with no place in the text (the document as a whole) marks the first
        // line, so that it still shows in the editor.
        const at = view.state.doc.line(line ?? 1);
        diagnostics.push({
          from: at.from,
          to: at.to,
          severity: "error",
          message: problem.path === "" ? problem.message : `${problem.path}: ${problem.message}`,
        });
      }
      view.dispatch(setDiagnostics(view.state, diagnostics));
    },
    lineOf,
    focusLine(line: number) {
      const at = view.state.doc.line(Math.min(Math.max(line, 1), view.state.doc.lines));
      view.dispatch({ selection: { anchor: at.from }, scrollIntoView: true });
      view.focus();
    },
  };
}

/** The steps of a problem's path: `flags.x.rules[0].when` gives flags, x, rules, 0, when. */
export function steps(path: string): (string | number)[] {
  const result: (string | number)[] = [];
  for (const part of path.split(".")) {
    const match = /^(.*?)((?:\[\d+\])*)$/.exec(part);
    const name = match?.[1] ?? part;
    if (name !== "") {
      result.push(name);
    }
    for (const index of (match?.[2] ?? "").matchAll(/\[(\d+)\]/g)) {
      result.push(Number(index[1]));
    }
  }
  return result;
}

const CONTAINERS = new Set(["BlockMapping", "FlowMapping", "BlockSequence", "FlowSequence"]);
/** Nodes that wrap a value: the value is their last child that is not punctuation or a key. */
const WRAPPERS = new Set(["Stream", "Document", "Pair", "Item", "Tagged", "Anchored"]);
const NOT_VALUES = new Set(["Key", "Tag", "Anchor", ":", "-", "?", "DirectiveEnd", "DocEnd", "Comment"]);

/** The YAML value node inside a node: through the document, pairs, tags and anchors. */
function valueIn(node: SyntaxNode | null): SyntaxNode | null {
  let current = node;
  while (current !== null && WRAPPERS.has(current.name) && !CONTAINERS.has(current.name)) {
    let value: SyntaxNode | null = null;
    for (let child = current.firstChild; child !== null; child = child.nextSibling) {
      if (!NOT_VALUES.has(child.name)) {
        value = child;
      }
    }
    current = value;
  }
  return current;
}

function keyText(doc: Text, key: SyntaxNode): string {
  const raw = doc.sliceString(key.from, key.to).trim();
  if (raw.startsWith('"')) {
    try {
      return String(JSON.parse(raw));
    } catch {
      return raw.slice(1, -1);
    }
  }
  if (raw.startsWith("'")) {
    return raw.slice(1, -1).replaceAll("''", "'");
  }
  return raw;
}

/**
 * Where a path points in the text: the key of the deepest step found, so that a problem
 * in a value that is not written (a missing field) still points at its flag.
 */
function locate(tree: Tree, doc: Text, path: string): number | null {
  const wanted = steps(path);
  let value = valueIn(tree.topNode.getChild("Document"));
  let found: number | null = null;
  let index = 0;
  while (index < wanted.length && value !== null) {
    const step = wanted[index];
    if (typeof step === "number") {
      const items = value.getChildren("Item");
      const item = items[step];
      if (item === undefined) {
        break;
      }
      found = item.from;
      value = valueIn(item);
      index += 1;
      continue;
    }
    // A key may itself hold dots (`flags.a.b` where `a.b` is a flag): the longest run of
    // steps that names a key wins.
    let matched: { pair: SyntaxNode; key: SyntaxNode; length: number } | null = null;
    for (const pair of value.getChildren("Pair")) {
      const key = pair.getChild("Key");
      if (key === null) {
        continue;
      }
      const text = keyText(doc, key);
      for (let length = wanted.length - index; length >= 1; length -= 1) {
        const name = wanted.slice(index, index + length).join(".");
        if (text === name && (matched === null || length > matched.length)) {
          matched = { pair, key, length };
          break;
        }
      }
    }
    if (matched === null) {
      break;
    }
    found = matched.key.from;
    value = valueIn(matched.pair);
    index += matched.length;
  }
  return found;
}

/** A parse error names its place in words: `... at line 4 column 7`. */
function lineInMessage(message: string, lines: number): number | null {
  const match = /\bline (\d+)/.exec(message);
  if (match === null) {
    return null;
  }
  const line = Number(match[1]);
  return line >= 1 && line <= lines ? line : null;
}
