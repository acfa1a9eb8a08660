// Pause, resume, restart and bounded runs: the buttons an operator sees for one pipeline.
import { call, can, notify } from "./api.js";
import { h } from "./dom.js";

const LABELS = { pause: "Pause", resume: "Resume", restart: "Restart", runs: "Start a bounded run" };

/** The actions that make sense in `state` (none for a viewer). */
export function actionsFor(who, pipeline) {
  if (!can(who, "operator")) return [];
  const state = pipeline.state;
  if (state === "idle") return ["runs"];
  if (state === "failed") return ["restart", "runs"];
  if (state === "paused" || state === "pausing" || pipeline.paused) return ["resume", "restart"];
  if (state === "done" || state === "stopped") return [];
  return ["pause"];
}

/** POST the action; `done(body)` gets the answer (the pipeline's summary, or the run). */
export async function operate(name, action, done) {
  try {
    const body = await call(`/pipelines/${encodeURIComponent(name)}/${action}`, { method: "POST" });
    const what = action === "runs" ? `run ${body.id} started` : `${body.state}`;
    notify(`${name}: ${what}${body.audit && body.audit !== "recorded" ? ` (audit ${body.audit})` : ""}`);
    await done(body);
  } catch (error) {
    notify(`${name}: ${LABELS[action].toLowerCase()} refused: ${error.message}`, "error");
  }
}

/** The buttons for `pipeline`; each is disabled while its request runs. */
export function actionButtons(who, pipeline, done) {
  return actionsFor(who, pipeline).map((action) => {
    const button = h("button", { type: "button", "data-testid": `${action}-${pipeline.name}`,
      "data-action": action, "aria-label": `${LABELS[action]} ${pipeline.name}` }, LABELS[action]);
    button.addEventListener("click", async () => {
      button.disabled = true;
      await operate(pipeline.name, action, done);
      button.disabled = false;
    });
    return button;
  });
}
