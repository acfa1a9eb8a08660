// Building and updating the page: an element helper, table rows, and a poller.
import { notify } from "./api.js";

/** h("a", {href: "/", "data-testid": "x", onclick: fn}, "text", child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return el;
}

/** Replace the table's body with one <tr> per row: a <tr>, or a list of cells (a <td>/<th>,
 * or its content: a node or text; the first becomes the row's header). `empty` shows when none. */
export function fillTable(table, rows, empty) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map((row) => (row instanceof Node ? row
    : h("tr", {}, ...row.map((c, i) => (c instanceof HTMLTableCellElement ? c : cell(c, i)))))));
  if (empty) empty.hidden = rows.length > 0;
}

/** A table cell; the first column (index 0) is the row's header. */
export function cell(content, index) {
  return h(index === 0 ? "th" : "td", index === 0 ? { scope: "row" } : {}, content ?? "–");
}

/** Update a container only when the `key` of what it shows changed (keeps focus and clicks stable). */
export function update(el, key, render) {
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  el.replaceChildren(...[render()].flat());
}

/** Run `task` now and again `every` ms after each run ends; errors go to the status line. */
export function poll(task, every = 2000) {
  let timer = null;
  const run = async () => {
    clearTimeout(timer);
    try {
      await task();
    } catch (error) {
      notify(error.message, "error");
    }
    timer = setTimeout(run, every);
  };
  run();
  return run; // call it to refresh at once
}

/** Hide every element marked for a role above the caller's. */
export function hideAbove(who, can) {
  if (!can(who, "operator")) document.querySelectorAll(".operate-only").forEach((el) => el.remove());
  if (!can(who, "admin")) document.querySelectorAll(".admin-only").forEach((el) => el.remove());
}
