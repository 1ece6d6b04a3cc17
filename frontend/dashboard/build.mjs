// Builds the dashboard into watt/management/dashboard/static/ (committed there, so
// users need neither node nor a network): `make dashboard`, or `npm ci && npm run build`.
// Output is deterministic: same sources and lock file, same bytes.
import { build } from "esbuild";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";

const out = new URL("../../watt/management/dashboard/static/", import.meta.url).pathname;

await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  legalComments: "eof", // keeps uPlot's MIT notice in app.js
  outfile: out + "app.js",
});
const css = readFileSync("node_modules/uplot/dist/uPlot.min.css", "utf8")
  + "\n" + readFileSync("src/app.css", "utf8");
writeFileSync(out + "app.css", "/* uPlot (MIT, Leon Sorokin) + Watt */\n" + css);
copyFileSync("src/index.html", out + "index.html");
copyFileSync("node_modules/uplot/LICENSE", out + "LICENSES-uPlot.txt");
console.log("built into " + out);
