// The API with the user's token: sign-in (the token is kept in this tab's sessionStorage), calls
// with `Authorization: Bearer`, and RFC 9457 problems turned into errors whose message is `detail`.
const KEY = "conduitd.token";
const NOTE = "conduitd.signin-note";
const RANKS = { viewer: 0, operator: 1, admin: 2 };
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** Whether the signed-in token has `role` or a higher one. */
export function can(who, role) {
  return (RANKS[who.role] ?? -1) >= RANKS[role];
}

/** A fresh Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Call the API; resolves to the JSON body (or the Response with `raw`), rejects with ApiError. */
export async function call(path, { method = "GET", body, raw = false, key } = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = key ?? newKey();
  let response;
  try {
    response = await fetch(API + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, `the daemon cannot be reached (${error.message})`);
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const problem = await response.json();
      if (problem && problem.detail) detail = String(problem.detail);
    } catch {
      // not a problem document: keep the status line
    }
    if (response.status === 401) signOut(detail);
    throw new ApiError(response.status, detail);
  }
  return raw ? response : response.json();
}

/** Show `message` in the page's status line (kind: "info" or "error"). */
export function notify(message, kind = "info") {
  const notice = document.getElementById("notice");
  notice.textContent = message;
  notice.className = `notice ${kind}`;
  notice.dataset.kind = kind;
}

/** Forget the token and show the sign-in form again (with `why`, if any). */
export function signOut(why) {
  sessionStorage.removeItem(KEY);
  if (why) sessionStorage.setItem(NOTE, why);
  window.location.reload();
}

function askForToken() {
  const panel = document.getElementById("signin-panel");
  const form = document.getElementById("signin");
  const note = sessionStorage.getItem(NOTE);
  sessionStorage.removeItem(NOTE);
  document.getElementById("signin-error").textContent = note ?? "";
  panel.hidden = false;
  document.getElementById("token-input").focus();
  return new Promise((resolve) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, form.elements.token.value.trim());
      form.reset();
      resolve();
    }, { once: true });
  });
}

function showWho(who) {
  const box = document.getElementById("session");
  const label = document.createElement("span");
  label.dataset.testid = "whoami";
  label.textContent = `${who.name} · ${who.role} · ${who.projects.join(", ")}`;
  const out = document.createElement("button");
  out.type = "button";
  out.dataset.testid = "signout";
  out.textContent = "Sign out";
  out.addEventListener("click", () => signOut());
  box.replaceChildren(label, out);
  document.body.dataset.role = who.role;
}

/** The caller ({name, role, projects}), asking for a token first when the tab has none. */
export async function session() {
  for (;;) {
    if (sessionStorage.getItem(KEY)) {
      try {
        const who = await call("/whoami");
        document.getElementById("signin-panel").hidden = true;
        document.getElementById("main").hidden = false;
        showWho(who);
        return who;
      } catch (error) {
        if (error.status === 401) return new Promise(() => {}); // signOut reloads the page
        notify(error.message, "error");
        throw error;
      }
    }
    await askForToken();
  }
}
