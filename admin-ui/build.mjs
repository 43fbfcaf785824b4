// Bundles src/ into dist/, which the server embeds. `--check` builds in memory and fails
// when the committed dist/ differs — a file changed, missing, or left over from an older
// build — so a change to the sources without a rebuild is caught by the test suite rather
// than shipped.
//
// Screens that need a large library (the YAML editor, the charts) import it with
// `import()`: esbuild splits it into a chunk of its own, loaded when that screen opens, so
// the first load stays small. The first load — the entry script and the chunks it imports
// statically — must stay within FIRST_LOAD_BUDGET bytes gzipped; the build fails beyond.
import { build } from "esbuild";
import { readFile, readdir, writeFile, mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { dirname, join, relative, basename } from "node:path";
import { gzipSync } from "node:zlib";

const root = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");
const FIRST_LOAD_BUDGET = 200 * 1024;

const result = await build({
  absWorkingDir: root,
  entryPoints: { console: "src/main.ts", "console-style": "src/console.css" },
  bundle: true,
  splitting: true,
  chunkNames: "[name]-[hash]",
  minify: true,
  format: "esm",
  target: ["es2022"],
  // A license comment or a source map path would make the output depend on where it was
  // built; the bytes must depend on the sources alone.
  legalComments: "none",
  charset: "utf8",
  outdir: "dist",
  write: false,
  metafile: true,
  logLevel: "warning",
});

const dist = join(root, "dist");
// What a browser fetches before the console shows anything: the style sheet, the entry
// script and, transitively, every chunk it imports statically (never the `import()` ones).
const outputs = result.metafile.outputs;
const contents = new Map(result.outputFiles.map((file) => [relative(root, file.path), file.contents]));
const firstLoad = new Set();
const pending = ["dist/console.js"];
while (pending.length > 0) {
  const name = pending.pop();
  if (firstLoad.has(name)) {
    continue;
  }
  firstLoad.add(name);
  for (const imported of outputs[name]?.imports ?? []) {
    if (imported.kind === "import-statement") {
      pending.push(imported.path);
    }
  }
}
// The page, from index.html: the chunks of the first load are announced with
// `modulepreload`, so the browser fetches them beside the entry script instead of after
// parsing it (a request waterfall one step shorter).
const template = await readFile(join(root, "index.html"), "utf8");
const entry = '<script type="module" src="/admin/console.js"></script>';
if (!template.includes(entry)) {
  console.error(`admin-ui/index.html: the entry script tag ${entry} is missing`);
  process.exit(1);
}
const preloads = [...firstLoad]
  .filter((name) => name !== "dist/console.js")
  .sort()
  .map((name) => `\n<link rel="modulepreload" href="/admin/${basename(name)}">`)
  .join("");
const page = { path: join(dist, "index.html"), contents: Buffer.from(template.replace(entry, entry + preloads)) };
const files = [...result.outputFiles, page];
const produced = new Set(files.map((file) => basename(file.path)));
let stale = [];
for (const file of files) {
  const name = relative(root, file.path);
  if (check) {
    const committed = await readFile(file.path).catch(() => null);
    if (committed === null || !committed.equals(Buffer.from(file.contents))) {
      stale.push(name);
    }
  } else {
    await mkdir(dirname(file.path), { recursive: true });
    await writeFile(file.path, file.contents);
    console.log(`${name}: ${file.contents.length} bytes`);
  }
}
// The server embeds every file of dist/: one the build no longer makes would be served.
for (const name of await readdir(dist).catch(() => [])) {
  if (!produced.has(name)) {
    if (check) {
      stale.push(`dist/${name} (no longer built)`);
    } else {
      await rm(join(dist, name));
      console.log(`dist/${name}: removed`);
    }
  }
}
if (stale.length > 0) {
  console.error(
    `admin-ui: ${stale.join(", ")} do not match the sources; run \`npm run build\` in admin-ui and commit dist/`,
  );
  process.exit(1);
}

// The server compresses for speed rather than size: gzip's fastest level is nearer what it
// sends than the best level (it sends about a tenth more still, docs/benchmarks.md).
let scriptBytes = 0;
for (const name of firstLoad) {
  scriptBytes += gzipSync(contents.get(name), { level: 1 }).length;
}
if (!check) {
  console.log(`first load: ${[...firstLoad].join(", ")}: ${scriptBytes} bytes of script gzipped`);
}
if (scriptBytes > FIRST_LOAD_BUDGET) {
  console.error(
    `admin-ui: the first load is ${scriptBytes} bytes of script gzipped, over the budget of ${FIRST_LOAD_BUDGET}; load the large library with import()`,
  );
  process.exit(1);
}
