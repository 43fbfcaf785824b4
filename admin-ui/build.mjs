// Bundles src/ into dist/, which the server embeds. `--check` builds in memory and fails
// when the committed dist/ differs, so a change to the sources without a rebuild is caught
// by the test suite rather than shipped.
import { build } from "esbuild";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { dirname, join, relative } from "node:path";

const root = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");

const result = await build({
  absWorkingDir: root,
  entryPoints: { console: "src/main.ts", "console-style": "src/console.css" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  // A license comment or a source map path would make the output depend on where it was
  // built; the bytes must depend on the sources alone.
  legalComments: "none",
  charset: "utf8",
  outdir: "dist",
  write: false,
  logLevel: "warning",
});

let stale = [];
for (const file of result.outputFiles) {
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
if (stale.length > 0) {
  console.error(
    `admin-ui: ${stale.join(", ")} do not match the sources; run \`npm run build\` in admin-ui and commit dist/`,
  );
  process.exit(1);
}
