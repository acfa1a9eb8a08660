// The DLQ browser: filters (rule, time span), pages (the API's `next` cursor), selection, replay
// (operators) and discard (admins, after a confirming second click).
import { call, can, notify, session } from "./api.js";
import { cell, fillTable, h, hideAbove } from "./dom.js";
import { instant, time } from "./format.js";

const who = await session();
hideAbove(who, can);
const name = document.body.dataset.pipeline;
const path = `/pipelines/${encodeURIComponent(name)}/dlq`;
const table = document.getElementById("dlq");
const form = document.getElementById("dlq-filters");
const selectAll = document.getElementById("dlq-select-all");
const pages = []; // the after_id (the API's `next`) of each page after the first, in order
let shown = [];
let next = null;

function query(after) {
  const q = new URLSearchParams();
  const rule = form.elements.rule.value.trim();
  if (rule) q.set("rule", rule);
  const since = instant(form.elements.since.value);
  const until = instant(form.elements.until.value);
  if (since) q.set("since", since);
  if (until) q.set("until", until);
  q.set("limit", form.elements.limit.value);
  if (after !== null && after !== undefined) q.set("after_id", String(after));
  return q.toString();
}

function summary(body) {
  return Object.entries(body).filter(([k]) => k !== "audit" && k !== "ids")
    .map(([k, v]) => `${k.replaceAll("_", " ")}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

function selected() {
  return [...table.querySelectorAll("tbody input[type=checkbox]:checked")].map((box) => shown[Number(box.value)].id);
}

async function load() {
  const after = pages.at(-1) ?? null;
  const body = await call(`${path}?${query(after)}`);
  const entries = body.entries;
  shown = entries;
  next = body.next ?? null;
  fillTable(table, entries.map((e, i) => h("tr", { "data-testid": "dlq-row", "data-id": e.id },
    actions.length ? h("td", {}, h("input", { type: "checkbox", value: i, "aria-label": `Select DLQ row ${e.id}`,
      "data-testid": `dlq-select-${e.id}` })) : null,
    ...[e.id, time(e.created_at), e.rule, e.column, e.value, e.reason, e.partition].map((c, n) => cell(c, n)),
    h("td", {}, h("details", {}, h("summary", {}, "row"), h("pre", {}, e.payload ?? "–"))))),
  document.getElementById("dlq-empty"));
  selectAll.checked = false;
  document.getElementById("dlq-next").disabled = next === null;
  document.getElementById("dlq-first").disabled = pages.length === 0;
  document.getElementById("dlq-prev").disabled = pages.length === 0;
  document.getElementById("dlq-page").textContent = `page ${pages.length + 1}, ${entries.length} row(s)`;
  table.dataset.loaded = "true";
}

async function act(action, ids) {
  try {
    const body = await call(`${path}/${action}`, { method: "POST", body: { ids } });
    notify(`${action} of ${ids.length} row(s): ${summary(body)}`);
  } catch (error) {
    notify(`${action} refused: ${error.message}`, "error");
  }
  await load();
}

function actionButton(action, label, confirmLabel) {
  const button = h("button", { type: "button", "data-testid": `dlq-${action}`, class: confirmLabel ? "danger" : "" },
    label);
  button.addEventListener("click", async () => {
    const ids = selected();
    if (!ids.length) {
      notify("select one or more rows first", "error");
      return;
    }
    if (confirmLabel && button.dataset.armed !== "true") { // a second click confirms
      button.dataset.armed = "true";
      button.textContent = `${confirmLabel} ${ids.length} row(s)`;
      return;
    }
    button.dataset.armed = "false";
    button.textContent = label;
    button.disabled = true;
    await act(action, ids);
    button.disabled = false;
  });
  return button;
}

const actions = [];
if (can(who, "operator")) actions.push(actionButton("replay", "Replay selected"));
if (can(who, "admin")) actions.push(actionButton("discard", "Discard selected", "Confirm: discard"));
document.getElementById("dlq-actions").replaceChildren(...actions);
if (!actions.length) selectAll.closest("th").remove(); // a viewer selects nothing

selectAll.addEventListener("change", () => {
  table.querySelectorAll("tbody input[type=checkbox]").forEach((box) => { box.checked = selectAll.checked; });
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  pages.length = 0;
  load().catch((error) => notify(error.message, "error"));
});
document.getElementById("dlq-next").addEventListener("click", () => {
  if (next === null) return;
  pages.push(next);
  load().catch((error) => notify(error.message, "error"));
});
document.getElementById("dlq-prev").addEventListener("click", () => {
  pages.pop();
  load().catch((error) => notify(error.message, "error"));
});
document.getElementById("dlq-first").addEventListener("click", () => {
  pages.length = 0;
  load().catch((error) => notify(error.message, "error"));
});
document.getElementById("f-rule").value = new URLSearchParams(window.location.search).get("rule") ?? "";
load().catch((error) => notify(error.message, "error"));
