// The audit log, newest first: who changed what, when, with the state before and after; filters
// by pipeline and action, and older pages by the API's `next_before_id` cursor.
import { call, notify, session } from "./api.js";
import { cell, fillTable, h } from "./dom.js";
import { json, time } from "./format.js";

await session();
const form = document.getElementById("audit-filters");
let before = null; // the cursor of the page shown (null: the newest)
let older = null;

async function load() {
  const q = new URLSearchParams({ limit: "50" });
  for (const key of ["pipeline", "action"]) {
    const value = form.elements[key].value.trim();
    if (value) q.set(key, value);
  }
  if (before) q.set("before_id", before);
  const body = await call(`/audit?${q}`);
  older = body.next_before_id ?? null;
  fillTable(document.getElementById("audit"), body.entries.map((e) => h("tr", { "data-testid": "audit-row" },
    ...[time(e.at), e.actor, e.role, e.project, e.pipeline, e.action, h("code", {}, json(e.before)),
      h("code", {}, json(e.after)), e.idempotency_key].map(cell))), document.getElementById("audit-empty"));
  document.getElementById("audit-notes").replaceChildren(
    ...(body.unavailable ?? []).map((u) => h("li", { class: "error" }, `${u.destination}: ${u.detail}`)),
    ...((body.not_kept ?? []).length ? [h("li", {}, `no audit table in the destination of: ${body.not_kept.join(", ")}`)]
      : []));
  document.getElementById("audit-older").disabled = older === null;
  document.getElementById("audit-newest").disabled = before === null;
  document.getElementById("main").dataset.loaded = "true";
}

const reload = () => load().catch((error) => notify(error.message, "error"));
form.addEventListener("submit", (event) => {
  event.preventDefault();
  before = null;
  reload();
});
document.getElementById("audit-older").addEventListener("click", () => {
  before = older;
  reload();
});
document.getElementById("audit-newest").addEventListener("click", () => {
  before = null;
  reload();
});
reload();
