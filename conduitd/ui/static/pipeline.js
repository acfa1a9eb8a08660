// One pipeline: state and actions, throughput and lag charts, batch timeline, partitions with
// their owners, the checkpoint reset flow and the effective config; refreshed every 2 s.
import { call, can, session } from "./api.js";
import { lineChart } from "./charts.js";
import { setUpReset } from "./checkpoints.js";
import { cell, fillTable, h, hideAbove, poll, update } from "./dom.js";
import { ago, json, lagText, lagTotals, num, seconds, time } from "./format.js";
import { actionButtons } from "./operate.js";

const who = await session();
hideAbove(who, can);
const name = document.body.dataset.pipeline;
const path = `/pipelines/${encodeURIComponent(name)}`;

function facts(p) {
  const items = [
    ["Project", p.project], ["Source", `${p.source} (${p.source_type})`],
    ["Destination", `${p.destination} (${p.destination_type}), table ${p.table}, ${p.mode}`],
    ["Rows read", num(p.rows_read)], ["Rows written", num(p.rows_written)], ["DLQ rows", num(p.dlq_rows)],
    ["Batches", num(p.batches)], ["Rows/s (1 min / 15 min)",
      `${num(p.rows_per_second?.["1m"], 2)} / ${num(p.rows_per_second?.["15m"], 2)}`],
    ["Lag", lagText(p.lag)], ["Last commit", p.last_commit ? `${time(p.last_commit)} (${ago(p.last_commit)})` : "never"],
    ["Lease owners", (p.lease_owners ?? []).join(", ") || "–"],
    ["Pending schema changes", num(p.pending_schema_changes ?? 0)],
  ];
  if (p.last_error) items.push(["Last error", p.last_error]);
  if (p.note) items.push(["Note", p.note]);
  for (const s of p.tuning?.suggestions ?? []) {
    const change = s.suggested !== null && s.suggested !== undefined ? `${s.setting}: ${json(s.now)} → ${json(s.suggested)}; ` : "";
    items.push(["Suggestion", `${change}${s.why ?? json(s)}`]);
  }
  return items.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-testid": `fact-${k}` }, v)]);
}

function charts(p) {
  const throughput = (p.throughput ?? []).map((s) => ({ at: new Date(s.at), value: s.rows_per_second }));
  const t = document.getElementById("throughput-chart");
  update(t, JSON.stringify(p.throughput ?? []), () => [t.querySelector("figcaption"),
    lineChart(throughput, { label: `rows per second of ${name}`, unit: "rows/s" })]);
  // The daemon samples the lag (summed over partitions, per unit) at every commit and status read.
  const samples = p.lag_series ?? [];
  const unit = Object.keys(samples.at(-1)?.lag ?? lagTotals(p.lag))[0] ?? "";
  const lag = samples.filter((s) => unit in (s.lag ?? {})).map((s) => ({ at: new Date(s.at), value: s.lag[unit] }));
  const l = document.getElementById("lag-chart");
  update(l, JSON.stringify(samples), () => [l.querySelector("figcaption"),
    lineChart(lag, { label: `lag of ${name}`, unit })]);
}

function timeline(batches) {
  fillTable(document.getElementById("timeline"), batches.map((b) => [
    time(b.at), h("span", { class: `outcome ${b.outcome}` }, b.outcome), num(b.records), num(b.rows_written),
    num(b.dlq_rows), seconds(b.seconds),
    Object.entries(b.stages ?? {}).map(([stage, s]) => `${stage} ${seconds(s)}`).join(", "), b.error_class ?? "–",
  ].map(cell)));
}

function partitions(list) {
  fillTable(document.getElementById("partitions"), list.map((p) => h("tr", { "data-partition": p.partition },
    ...[p.partition, json(p.checkpoint), time(p.updated_at), p.owner ?? "this daemon", p.epoch ?? "–",
      lagText({ [p.partition]: p.lag })].map(cell))));
}

let reset = null;
async function load() {
  const [p, t, parts] = await Promise.all([call(path), call(`${path}/timeline?limit=50`),
    call(`${path}/partitions`)]);
  update(document.getElementById("pipeline-state"), p.state, () => h("span", { class: `state ${p.state}` }, p.state));
  document.getElementById("pipeline-state").dataset.state = p.state;
  update(document.getElementById("actions"), `${p.state}/${p.paused}`, () => actionButtons(who, p, () => refresh()));
  document.getElementById("facts").replaceChildren(...facts(p));
  charts(p);
  timeline(t.batches);
  partitions(parts.partitions);
  reset ??= setUpReset(who, name, () => refresh());
  reset.show(p, parts.partitions);
  document.getElementById("main").dataset.loaded = "true";
}

const refresh = poll(load);
if (can(who, "viewer")) {
  call(`${path}/config`).then((c) => { document.getElementById("config").textContent = JSON.stringify(c, null, 2); },
    () => {});
}
