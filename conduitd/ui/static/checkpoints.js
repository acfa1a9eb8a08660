// The checkpoint reset flow (admins): choose a partition and a target, dry run first, read what
// would be read again or skipped, then confirm exactly that reset (changing the form cancels it).
import { call, can, newKey, notify } from "./api.js";
import { h } from "./dom.js";
import { json, num } from "./format.js";

const IDLE = new Set(["paused", "idle", "failed", "stopped", "done"]);

function target(kind, text) {
  if (kind === "position") return JSON.parse(text);
  if (kind === "offset" && /^-?\d+$/.test(text)) return Number(text);
  return text; // timestamps, watermarks and Kinesis sequence numbers (too long for a JS number) as text
}

/** What a reset (or its dry run) answered: a sentence ("re-read 50,690 bytes") and every field. */
function outcome(body) {
  const said = body.direction && body.count !== null && body.count !== undefined
    ? h("p", { "data-testid": "reset-effect" }, `${body.dry_run ? "Would" : "Will"} ${body.direction} `,
      h("strong", {}, `${num(body.count)} ${body.unit ?? ""}`), " of this partition.") : null;
  const fields = Object.entries(body).filter(([k, v]) => k !== "audit" && v !== null && v !== undefined);
  return [said, h("dl", { class: "facts" }, fields.flatMap(([k, v]) => [
    h("dt", {}, k.replaceAll("_", " ")),
    h("dd", { "data-testid": `reset-${k}` }, typeof v === "object" ? h("code", {}, json(v)) : String(v)),
  ]))];
}

/** Wire the panel of pipeline `name`; `show(pipeline, partitions)` keeps it current. */
export function setUpReset(who, name, changed) {
  const note = document.getElementById("reset-note");
  if (!can(who, "admin")) {
    note.textContent = "Only an admin resets a checkpoint, and only while the pipeline is paused.";
    return { show() {} };
  }
  const form = document.getElementById("reset-form");
  const preview = document.getElementById("reset-preview");
  const select = document.getElementById("reset-partition");
  const dryRun = document.getElementById("reset-dry-run");
  const path = `/pipelines/${encodeURIComponent(name)}/checkpoints/reset`;
  form.hidden = false;

  const request = () => {
    const kind = form.elements.kind.value;
    return { partition: select.value, [kind]: target(kind, form.elements.value.value.trim()) };
  };
  form.addEventListener("input", () => preview.replaceChildren());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = request();
    } catch (error) {
      notify(`the position is not valid JSON: ${error.message}`, "error");
      return;
    }
    try {
      const answer = await call(path, { method: "POST", body: { ...body, dry_run: true } });
      const key = newKey();
      const confirm = h("button", { type: "button", class: "danger", "data-testid": "reset-confirm" },
        `Reset ${body.partition}`);
      const cancel = h("button", { type: "button", "data-testid": "reset-cancel" }, "Cancel");
      cancel.addEventListener("click", () => preview.replaceChildren());
      confirm.addEventListener("click", async () => {
        confirm.disabled = true;
        try {
          const done = await call(path, { method: "POST", body: { ...body, dry_run: false }, key });
          preview.replaceChildren(h("h3", {}, "Reset made"), ...outcome(done));
          notify(`${name}: checkpoint of ${body.partition} reset; resume the pipeline to read from there`);
          changed();
        } catch (error) {
          confirm.disabled = false;
          notify(`reset refused: ${error.message}`, "error");
        }
      });
      preview.replaceChildren(h("h3", {}, "Dry run: nothing changed yet"), ...outcome(answer),
        h("p", {}, confirm, " ", cancel));
    } catch (error) {
      notify(`dry run refused: ${error.message}`, "error");
    }
  });

  return {
    show(pipeline, partitions) {
      const names = partitions.map((p) => p.partition);
      if (select.dataset.key !== names.join("\n")) {
        const chosen = select.value;
        select.replaceChildren(...names.map((n) => h("option", { value: n, selected: n === chosen }, n)));
        select.dataset.key = names.join("\n");
      }
      const idle = IDLE.has(pipeline.state);
      dryRun.disabled = !idle;
      note.textContent = idle
        ? "The pipeline reads nothing now: a checkpoint may be reset. Dry run first."
        : "Pause the pipeline first: a checkpoint is reset only while nothing reads it.";
    },
  };
}
