// Schema drift review: the pending DDL of `schema_evolution: manual`, applied or rejected by an
// admin, and the recent changes this daemon saw.
import { call, can, notify, session } from "./api.js";
import { cell, fillTable, h, hideAbove } from "./dom.js";
import { time } from "./format.js";

const who = await session();
hideAbove(who, can);
const name = document.body.dataset.pipeline;
const path = `/pipelines/${encodeURIComponent(name)}`;

function decide(change, decision) {
  const label = decision === "apply" ? "Apply" : "Reject";
  const button = h("button", { type: "button", class: decision === "apply" ? "" : "danger",
    "data-testid": `${decision}-${change.id}`, "aria-label": `${label} change ${change.id}` }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await call(`${path}/schema/pending/${encodeURIComponent(change.id)}/${decision}`, { method: "POST" });
      notify(`change ${change.id}: ${decision === "apply" ? "applied" : "rejected"}`);
    } catch (error) {
      notify(`${decision} refused: ${error.message}`, "error");
    }
    await load();
  });
  return button;
}

async function load() {
  const [{ pending, note }, p] = await Promise.all([call(`${path}/schema/pending`), call(path)]);
  const admin = can(who, "admin");
  fillTable(document.getElementById("pending"), pending.map((c) => h("tr", { "data-testid": "pending-row",
    "data-id": c.id }, ...[c.id, time(c.recorded_at), c.table, c.change, c.column,
    `${c.old ?? "–"} → ${c.new ?? "–"}`, h("code", {}, c.ddl)].map(cell),
  admin ? h("td", {}, decide(c, "apply"), " ", decide(c, "reject")) : null)), document.getElementById("pending-empty"));
  if (note) notify(note);
  fillTable(document.getElementById("history"), (p.schema_changes ?? []).slice().reverse().map((c) => [
    c.table, c.change, c.column, c.applied ? "yes" : "no", h("code", {}, c.ddl ?? "–")].map(cell)));
  document.getElementById("main").dataset.loaded = "true";
}

load().catch((error) => notify(error.message, "error"));
