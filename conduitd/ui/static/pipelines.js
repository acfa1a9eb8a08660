// The pipelines list: state, lag, throughput sparkline, DLQ count and pause/resume, every 2 s.
import { call, can, session } from "./api.js";
import { sparkline } from "./charts.js";
import { h, hideAbove, poll, update } from "./dom.js";
import { ago, lagText, num } from "./format.js";
import { actionButtons } from "./operate.js";

const who = await session();
hideAbove(who, can);
const table = document.getElementById("pipelines");
const rows = new Map(); // name -> <tr>
function rowFor(name) {
  let tr = rows.get(name);
  if (!tr) {
    const cells = ["name", "project", "state", "route", "lag", "rate", "spark", "written", "dlq", "commit"];
    if (can(who, "operator")) cells.push("actions");
    tr = h("tr", { "data-testid": "pipeline-row", "data-pipeline": name },
      ...cells.map((c, i) => h(i === 0 ? "th" : "td", { "data-col": c, "data-testid": c, scope: i ? null : "row" })));
    rows.set(name, tr);
  }
  return tr;
}

function show(tr, p, values) {
  const col = (c) => tr.querySelector(`[data-col="${c}"]`);
  const link = `/pipelines/${encodeURIComponent(p.name)}`;
  update(col("name"), p.name, () => h("a", { href: link }, p.name));
  col("project").textContent = p.project;
  update(col("state"), p.state, () => h("span", { class: `state ${p.state}` }, p.state));
  tr.dataset.state = p.state;
  col("route").textContent = `${p.source} (${p.source_type}) → ${p.destination} (${p.destination_type}) ${p.table}`;
  col("lag").textContent = lagText(p.lag);
  col("rate").textContent = num(p.rows_per_second?.["1m"], 2);
  update(col("spark"), values.join(","), () => sparkline(values, { label: `rows per second of ${p.name}, 15 min` }));
  col("written").textContent = num(p.rows_written);
  update(col("dlq"), String(p.dlq_rows ?? 0), () => (p.dlq_rows
    ? h("a", { href: `${link}/dlq` }, num(p.dlq_rows)) : num(p.dlq_rows ?? 0)));
  col("commit").textContent = p.last_error ? `error: ${p.last_error}` : ago(p.last_commit);
  const actions = col("actions");
  if (actions) {
    update(actions, `${p.state}/${p.paused}`, () => actionButtons(who, p, () => refresh()));
  }
}

async function load() {
  const { pipelines } = await call("/pipelines?series=true");
  const values = pipelines.map((p) => (p.throughput ?? []).map((s) => s.rows_per_second));
  const body = table.tBodies[0];
  const wanted = pipelines.map((p, i) => {
    const tr = rowFor(p.name);
    show(tr, p, values[i]);
    return tr;
  });
  for (const [name, tr] of rows) if (!pipelines.some((p) => p.name === name)) { tr.remove(); rows.delete(name); }
  wanted.forEach((tr, i) => { // existing rows stay in place unless the order changed
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] ?? null);
  });
  document.getElementById("pipelines-empty").hidden = pipelines.length > 0;
  table.dataset.loaded = "true";
}

const refresh = poll(load);
