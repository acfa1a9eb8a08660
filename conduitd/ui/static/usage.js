// Usage per project and per pipeline and hour, and its CSV export (fetched with the token, then
// saved: a plain link could not send the bearer header).
import { call, notify, session } from "./api.js";
import { cell, fillTable, h } from "./dom.js";
import { bytes, instant, num, time } from "./format.js";

await session();
const form = document.getElementById("usage-filters");

function query(extra = {}) {
  const q = new URLSearchParams(extra);
  const since = instant(form.elements.since.value);
  if (since) q.set("since", since);
  return q.toString();
}

function perProject(rows) {
  const projects = new Map();
  for (const r of rows) {
    const p = projects.get(r.project) ?? { pipelines: new Set(), rows: 0, bytes: 0, dlq_rows: 0, batches: 0 };
    p.pipelines.add(r.pipeline);
    for (const k of ["rows", "bytes", "dlq_rows", "batches"]) p[k] += r[k];
    projects.set(r.project, p);
  }
  return [...projects.entries()].sort(([a], [b]) => a.localeCompare(b));
}

async function load() {
  const { usage, not_kept: notKept = [], unavailable = [] } = await call(`/usage?${query({ group: "pipeline" })}`);
  document.getElementById("usage-notes").replaceChildren(
    ...notKept.map((n) => h("li", {}, `${n.pipeline}: ${n.reason}${n.note ? ` (${n.note})` : ""}`)),
    ...unavailable.map((u) => h("li", { class: "error" }, `${u.pipelines.join(", ")}: ${u.detail}`)));
  fillTable(document.getElementById("usage-projects"), perProject(usage).map(([project, p]) => [
    project, [...p.pipelines].sort().join(", "), num(p.rows), bytes(p.bytes), num(p.dlq_rows), num(p.batches),
  ].map(cell)));
  fillTable(document.getElementById("usage-hours"), usage.slice().reverse().map((r) => [
    time(r.hour), r.project, r.pipeline, num(r.rows), bytes(r.bytes), num(r.dlq_rows), num(r.batches),
  ].map(cell)));
  document.getElementById("main").dataset.loaded = "true";
}

async function download() {
  const response = await call(`/usage?${query({ group: "pipeline", format: "csv" })}`, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = "conduitd-usage.csv";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  load().catch((error) => notify(error.message, "error"));
});
document.getElementById("usage-csv").addEventListener("click", () => {
  download().catch((error) => notify(`CSV export: ${error.message}`, "error"));
});
load().catch((error) => notify(error.message, "error"));
