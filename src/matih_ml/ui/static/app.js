// The pages' shell: the session, the API client, the router, and small DOM helpers.
// Everything user-supplied goes into the page as text (textContent), never as HTML.

const KEY = "matih.credential";
const PAGES = new Set(["login", "models", "approvals", "runs", "monitoring"]);

export const session = {
  get credential() { return sessionStorage.getItem(KEY); },
  set credential(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
  who: null,
};

// Calls the API with the session's credential. Resolves to {ok, status, data, error};
// error is the API's {code, message, details}. A 401 ends the session.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session.credential) headers.Authorization = `Bearer ${session.credential}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    return { ok: false, status: 0, error: { code: "NETWORK", message: String(exc), details: {} } };
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (response.ok) return { ok: true, status: response.status, data };
  const error = (data && data.error) || { code: String(response.status), message: text, details: {} };
  if (response.status === 401 && !path.endsWith("/whoami")) {
    session.credential = null;
    navigate("#/login");
  }
  return { ok: false, status: response.status, error };
}

// h("a", {href: "#/x", class: "c"}, "text", child): an element; strings become text nodes.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function table(columns, rows, { id } = {}) {
  return h("table", { id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((cell) => h("td", {}, cell))))));
}

export function badge(stage) {
  return h("span", { class: `badge stage-${stage}`, dataset: { stage } }, stage);
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

export function number(v) {
  return typeof v === "number" ? (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : +v.toFixed(4)) : v ?? "";
}

// An API error as a block: its message, and the gate's reasons when there are some.
export function errorBox(error) {
  const reasons = (error.details && error.details.reasons) || [];
  return h("div", { class: "error", role: "alert", dataset: { code: error.code } },
    h("strong", {}, error.code), " ", error.message,
    reasons.length ? h("ul", { class: "reasons" }, reasons.map((r) => h("li", {}, typeof r === "string" ? r : JSON.stringify(r)))) : null);
}

// Ask before changing state. Resolves to null when cancelled, else {reason}.
export function confirmAction(title, text, { askReason = false, requireReason = false } = {}) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const reason = document.getElementById("confirm-reason");
  const label = document.getElementById("confirm-reason-label");
  reason.value = "";
  label.hidden = !askReason;
  reason.required = requireReason;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? { reason: reason.value } : null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

export function navigate(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

export function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query) };
}

async function whoami() {
  if (!session.credential) return null;
  if (session.who) return session.who;
  const r = await api("GET", "/api/v1/whoami");
  session.who = r.ok ? r.data : null;
  if (!r.ok) session.credential = null;
  return session.who;
}

export async function login(credential) {
  session.credential = credential.trim();
  session.who = null;
  const r = await api("GET", "/api/v1/whoami");
  if (!r.ok) { session.credential = null; return r; }
  session.who = r.data;
  return r;
}

function logout() {
  session.credential = null;
  session.who = null;
  navigate("#/login");
}

let rendering = 0;

async function route() {
  const ticket = ++rendering;
  const main = document.getElementById("main");
  const { parts, query } = parseHash();
  let page = parts[0] || "models";
  const who = await whoami();
  if (!who) page = "login";
  if (!PAGES.has(page)) page = "models";
  document.getElementById("nav").hidden = !who;
  document.getElementById("logout").hidden = !who;
  document.getElementById("who").textContent = who ? `${who.subject} @ ${who.tenant_id} (${who.roles.join(", ")})` : "";
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === page);
  const module = await import(`./pages/${page}.js`);
  if (ticket !== rendering) return; // a newer navigation won
  main.replaceChildren();
  main.dataset.page = page;
  main.dataset.ready = "false";
  try {
    await module.render(main, { parts: parts.slice(1), query, who });
  } catch (exc) {
    main.append(errorBox({ code: "PAGE", message: String(exc), details: {} }));
  }
  if (ticket === rendering) main.dataset.ready = "true";
}

document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", route);
route();
