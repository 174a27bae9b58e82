// Runs every query of the Grafana dashboard against a real Prometheus that
// scrapes a real BandSync server (scripts/deploy.sh sets both up), so a
// query that does not parse, or a metric that is not scraped, fails here
// rather than as an empty panel in front of an operator.
//
//   PROM_URL=http://127.0.0.1:9090 node deploy/prometheus/check-dashboard.mjs
import { readFileSync } from "node:fs";

const prom = process.env.PROM_URL;
if (!prom) throw new Error("set PROM_URL");
const dash = JSON.parse(readFileSync(new URL("../grafana/bandsync-dashboard.json", import.meta.url), "utf8"));

// What Grafana substitutes: "All" for the variables, a rate window.
const expand = (q) => q.replaceAll("$__rate_interval", "1m").replaceAll("$job", ".*").replaceAll("$instance", ".*");

async function query(q) {
  const res = await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = await res.json();
  if (body.status !== "success") throw new Error(`${q}: ${body.errorType}: ${body.error}`);
  return body.data.result;
}

let failed = 0;
let n = 0;
let withData = 0;
for (const panel of dash.panels) {
  for (const t of panel.targets) {
    n++;
    try {
      const r = await query(expand(t.expr));
      if (r.length > 0) withData++;
    } catch (err) {
      failed++;
      console.error(`!!! panel "${panel.title}": ${err.message}`);
    }
  }
}
for (const v of dash.templating.list) {
  const m = /^label_values\((.+), (\w+)\)$/.exec(v.definition);
  if (!m) {
    failed++;
    console.error(`!!! variable ${v.name}: unexpected definition ${v.definition}`);
    continue;
  }
  const r = await query(expand(m[1])).catch((err) => (failed++, console.error(`!!! variable ${v.name}: ${err.message}`), []));
  if (r.length === 0) {
    failed++;
    console.error(`!!! variable ${v.name}: no series for ${m[1]}, so the dashboard would offer no ${m[2]}`);
  }
}
// The server is idle, so rates and latency quantiles may be empty, but the
// gauges must have come through the scrape.
if (withData < n / 3) {
  failed++;
  console.error(`!!! only ${withData} of ${n} queries returned data: is the server being scraped?`);
}
console.log(`>>> ${n} dashboard queries ran on Prometheus, ${withData} with data, ${failed} failures`);
process.exit(failed ? 1 : 0);
