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
