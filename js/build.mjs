// Bundle one ESM per widget into clrp_widgets/static/ (everything inlined: no CDN imports).
import { build } from "esbuild";
import { readdirSync } from "node:fs";

const widgets = readdirSync("js").filter((f) => f.endsWith(".js"));
await Promise.all(
  widgets.map((file) =>
    build({
      entryPoints: [`js/${file}`],
      bundle: true,
      format: "esm",
      minify: true,
      target: "es2020",
      outfile: `clrp_widgets/static/${file}`,
      logLevel: "warning",
    }),
  ),
);
console.log(`built ${widgets.length} widget bundle(s): ${widgets.join(", ")}`);

// Vendor the offline HTML export's runtime (clrp_widgets.export inlines it): require.js and the
// widgets' html-manager with its icon fonts (woff2, the format every current browser picks).
import { copyFileSync, mkdirSync } from "node:fs";
const vendor = "clrp_widgets/static/vendor";
const htmlManager = "node_modules/@jupyter-widgets/html-manager/dist";
mkdirSync(`${vendor}/html-manager`, { recursive: true });
copyFileSync("node_modules/requirejs/require.js", `${vendor}/require.js`);
for (const file of readdirSync(htmlManager)) {
  if (file === "embed-amd.js" || file.endsWith(".woff2")) {
    copyFileSync(`${htmlManager}/${file}`, `${vendor}/html-manager/${file}`);
  }
}
console.log(`vendored require.js and the html-manager into ${vendor}`);
