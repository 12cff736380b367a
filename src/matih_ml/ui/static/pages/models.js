// The Models pages:
//   #/models                  the list: search, filters, pages (state in the hash query)
//   #/models/<name>           versions, model card, lineage, promote and roll back
//   #/models/<name>/history   the timeline of stage moves, and production at a time
import { api, badge, confirmAction, errorBox, h, navigate, number, session, when } from "../app.js";

const STAGES = ["development", "staging", "production", "archived"];
const FRAMEWORKS = ["sklearn", "pytorch", "onnx", "tensorflow"];
const NEXT_STAGE = { development: "staging", staging: "production" };
const PAGE_SIZE = 25;
const KEY_METRICS = 4;

// What the last action did, shown once on the page it reloads.
let flash = null;

export async function render(main, { parts, query, who }) {
  useStyles();
  if (parts.length === 0) return renderList(main, query);
  if (parts[1] === "history") return renderHistory(main, parts[0]);
  return renderModel(main, parts[0], who, query.get("version"));
}

function useStyles() {
  const href = "/ui/static/pages/models.css";
  if (!document.head.querySelector(`link[href="${href}"]`)) {
    document.head.append(h("link", { rel: "stylesheet", href }));
  }
}

const modelPath = (name) => `/api/v1/models/${encodeURIComponent(name)}`;
const modelHash = (name) => `#/models/${encodeURIComponent(name)}`;

// ------------------------------------------------------------------ the list

// The filters live in the hash query; `pages` is the chain of page tokens that led to
// this page (comma-separated: tokens are base64), so Previous pops one and a reload
// shows the same page.
function listState(query) {
  const size = Number.parseInt(query.get("size") || "", 10);
  return {
    q: query.get("q") || "",
    stage: STAGES.includes(query.get("stage")) ? query.get("stage") : "",
    framework: FRAMEWORKS.includes(query.get("framework")) ? query.get("framework") : "",
    tag: query.get("tag") || "",
    size: size >= 1 && size <= 100 ? size : PAGE_SIZE,
    pages: (query.get("pages") || "").split(",").filter(Boolean),
  };
}

function listHash(state) {
  const params = new URLSearchParams();
  for (const key of ["q", "stage", "framework", "tag"]) if (state[key]) params.set(key, state[key]);
  if (state.size !== PAGE_SIZE) params.set("size", String(state.size));
  if (state.pages.length) params.set("pages", state.pages.join(","));
  const text = params.toString();
  return text ? `#/models?${text}` : "#/models";
}

async function renderList(main, query) {
  const state = listState(query);
  const params = new URLSearchParams({ max_results: String(state.size) });
  for (const key of ["q", "stage", "framework", "tag"]) if (state[key]) params.set(key, state[key]);
  if (state.pages.length) params.set("page_token", state.pages[state.pages.length - 1]);
  const r = await api("GET", `/api/v1/models?${params}`);

  main.append(h("h1", {}, "Models"), filterForm(state));
  if (!r.ok) {
    main.append(h("div", { id: "list-error" }, errorBox(r.error),
      state.pages.length ? h("a", { href: listHash({ ...state, pages: [] }) }, "Back to the first page") : null));
    return;
  }
  const items = r.data.items;
  if (items.length) main.append(modelsTable(items));
  else main.append(h("p", { id: "models-empty", class: "card muted" }, filtered(state) ? "No models match these filters." : "No models yet."));
  main.append(pager(state, r.data.next_page_token, items.length));
}

function filtered(state) {
  return Boolean(state.q || state.stage || state.framework || state.tag);
}

function filterForm(state) {
  const options = (values, chosen, all) => [
    h("option", { value: "" }, all),
    ...values.map((v) => h("option", { value: v, selected: v === chosen }, v)),
  ];
  const q = h("input", { id: "q", type: "search", name: "q", value: state.q, placeholder: "Search names", maxlength: 128, "aria-label": "Search model names" });
  const stage = h("select", { id: "stage-filter", name: "stage", "aria-label": "Stage" }, options(STAGES, state.stage, "any stage"));
  const framework = h("select", { id: "framework-filter", name: "framework", "aria-label": "Framework" }, options(FRAMEWORKS, state.framework, "any framework"));
  const tag = h("input", { id: "tag-filter", name: "tag", value: state.tag, placeholder: "tag key=value", "aria-label": "Tag (key=value)" });
  const form = h("form", { id: "model-filters", class: "toolbar filters", role: "search" },
    q, stage, framework, tag,
    h("button", { type: "submit", id: "apply-filters" }, "Search"),
    filtered(state) ? h("a", { href: "#/models", id: "clear-filters" }, "Clear") : null);
  const apply = () => navigate(listHash({
    ...state, q: q.value.trim(), stage: stage.value, framework: framework.value, tag: tag.value.trim(), pages: [],
  }));
  form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  stage.addEventListener("change", apply);
  framework.addEventListener("change", apply);
  return form;
}

function modelsTable(items) {
  const head = ["Name", "Stage", "Current", "Framework", "Tags", "Updated"];
  return h("table", { id: "models-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, items.map((m) => h("tr", { dataset: { model: m.name } },
      h("td", {}, h("a", { href: modelHash(m.name), class: "model-link" }, m.name),
        m.description ? h("div", { class: "muted small" }, m.description) : null),
      h("td", {}, badge(m.stage)),
      h("td", {}, m.current_version ? `v${m.current_version}` : "", m.versions.length > 1 ? h("span", { class: "muted" }, ` of ${m.versions.length}`) : null),
      h("td", {}, m.framework),
      h("td", {}, tagList(m.tags, LIST_TAGS)),
      h("td", {}, when(m.updated_at))))));
}

// Tags as chips, the user's own first (lineage tags, which jobs write, after them);
// with `limit`, the rest are counted, and listed in the tooltip.
const LINEAGE_TAG = /^(feast\.|job_id$|training_run_id$)/;
const LIST_TAGS = 3;
function tagList(tags, limit = Infinity) {
  const rank = ([k]) => (LINEAGE_TAG.test(k) ? 1 : 0);
  const entries = Object.entries(tags || {}).sort((a, b) => rank(a) - rank(b) || a[0].localeCompare(b[0]));
  const text = ([k, v]) => `${k}=${v}`;
  const rest = entries.slice(limit);
  return h("span", { class: "tags" },
    entries.slice(0, limit).map((e) => h("code", { class: "tag" }, text(e))),
    rest.length ? h("span", { class: "muted small", title: rest.map(text).join("\n") }, `+${rest.length} more`) : null);
}

function pager(state, nextToken, count) {
  const page = state.pages.length + 1;
  const prev = h("button", { type: "button", id: "prev", class: "secondary", disabled: page === 1 }, "Previous");
  const next = h("button", { type: "button", id: "next", class: "secondary", disabled: !nextToken }, "Next");
  prev.addEventListener("click", () => navigate(listHash({ ...state, pages: state.pages.slice(0, -1) })));
  next.addEventListener("click", () => navigate(listHash({ ...state, pages: [...state.pages, nextToken] })));
  return h("div", { class: "toolbar pager" }, prev,
    h("span", { id: "page-number", class: "muted", dataset: { page: String(page) } }, `Page ${page} · ${count} shown`),
    next);
}

// ------------------------------------------------------------------ one model

async function renderModel(main, name, who, wanted) {
  const [m, vs] = await Promise.all([api("GET", modelPath(name)), api("GET", `${modelPath(name)}/versions`)]);
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/models" }, "Models"), " / ", name));
  if (!m.ok || !vs.ok) {
    main.append(h("h1", {}, name), h("div", { id: "model-error" }, errorBox((m.ok ? vs : m).error)));
    return;
  }
  const model = m.data;
  const [versions, runs] = await Promise.all([withAliases(name, vs.data.items), readRuns(vs.data.items)]);

  main.append(
    h("div", { class: "title" },
      h("h1", { id: "model-name" }, model.name), badge(model.stage),
      h("a", { href: `${modelHash(name)}/history`, id: "history-link", class: "push" }, "Stage history →")),
    summary(model),
    h("h2", {}, "Versions"),
    versionsTable(versions, runs));

  const chosen = versions.some((v) => v.version === wanted) ? wanted : defaultVersion(model, versions);
  const panel = h("section", { id: "version-panel", class: "card" });
  main.append(panel);
  if (chosen) await renderVersion(panel, model, versions, runs, chosen, who);
  else panel.append(h("p", { class: "muted" }, "This model has no versions."));
}

function summary(model) {
  const facts = [
    ["Framework", model.framework],
    ["Type", model.model_type],
    ["Current version", model.current_version ? `v${model.current_version}` : "none"],
    ["Created by", model.created_by || "unknown"],
    ["Created", when(model.created_at)],
    ["Updated", when(model.updated_at)],
  ];
  return h("div", { class: "card", id: "model-summary" },
    model.description ? h("p", {}, model.description) : null,
    h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    Object.keys(model.tags).length ? h("p", {}, h("span", { class: "muted" }, "Tags "), tagList(model.tags)) : null);
}

// The versions list leaves the aliases out (MLflow's version search does not return
// them); each version read alone has them. The newest DETAIL_MAX are read.
const DETAIL_MAX = 50;
async function withAliases(name, versions) {
  const shown = versions.slice(0, DETAIL_MAX);
  const found = await Promise.all(shown.map((v) => api("GET", `${modelPath(name)}/versions/${v.version}`)));
  return versions.map((v, i) => (i < shown.length && found[i].ok ? { ...v, aliases: found[i].data.aliases } : v));
}

// Each version's run: its metrics (the key metrics) and experiment (for the lineage).
async function readRuns(versions) {
  const ids = [...new Set(versions.map((v) => v.run_id).filter(Boolean))].slice(0, DETAIL_MAX);
  const found = await Promise.all(ids.map((id) => api("GET", `/api/v1/runs/${id}`)));
  return Object.fromEntries(ids.map((id, i) => [id, found[i].ok ? found[i].data : null]));
}

function keyMetrics(run) {
  const entries = Object.entries((run && run.metrics) || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return h("span", { class: "muted" }, "none");
  const shown = entries.slice(0, KEY_METRICS).map(([k, v]) => h("span", { class: "metric", dataset: { metric: k } }, `${k} `, h("strong", {}, String(number(v)))));
  return [...shown, entries.length > KEY_METRICS ? h("span", { class: "muted" }, ` +${entries.length - KEY_METRICS}`) : null];
}

// Who made the version, as its run says: who registered it (an upload's or a job's
// registration run), else the run's author.
function creator(run) {
  const tags = (run && run.tags) || {};
  return tags["matih.created_by"] || tags["matih.user_id"] || tags["mlflow.user"] || "";
}

function versionsTable(versions, runs) {
  const head = ["Version", "Stage", "Aliases", "Key metrics", "Created by", "Created"];
  return h("table", { id: "versions-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, versions.map((v) => {
      const run = v.run_id ? runs[v.run_id] : null;
      return h("tr", { dataset: { version: v.version } },
        h("td", {}, `v${v.version}`),
        h("td", { class: "stage" }, badge(v.stage)),
        h("td", { class: "aliases" }, v.aliases.length ? v.aliases.map((a) => h("code", { class: "alias" }, `@${a}`)) : h("span", { class: "muted" }, "—")),
        h("td", { class: "metrics" }, keyMetrics(run)),
        h("td", {}, creator(run)),
        h("td", {}, when(v.created_at)));
    })));
}

// The version to show first: the newest one that can still move up, else the current.
function defaultVersion(model, versions) {
  const movable = versions.find((v) => NEXT_STAGE[v.stage]);
  return (movable || versions.find((v) => v.version === model.current_version) || versions[0] || {}).version;
}

async function renderVersion(panel, model, versions, runs, chosen, who) {
  const v = versions.find((x) => x.version === chosen);
  const detail = await api("GET", `${modelPath(model.name)}/versions/${v.version}?with_card=true`);
  const card = detail.ok ? detail.data.model_card : null;
  const run = v.run_id ? runs[v.run_id] : null;

  const select = h("select", { id: "version-select", "aria-label": "Version" },
    versions.map((x) => h("option", { value: x.version, selected: x.version === v.version }, `v${x.version} (${x.stage})`)));
  const here = `${modelHash(model.name)}?version=${encodeURIComponent(v.version)}`;
  select.addEventListener("change", () => navigate(`${modelHash(model.name)}?version=${encodeURIComponent(select.value)}`));

  const out = h("div", { id: "action-error" });
  const next = NEXT_STAGE[v.stage];
  const canWrite = who && who.roles.some((r) => r === "editor" || r === "admin");
  const promote = h("button", { type: "button", id: "promote", disabled: !next || !canWrite, dataset: { to: next || "" } },
    next ? `Promote v${v.version} to ${next}` : `v${v.version} is ${v.stage}`);
  const rollback = h("button", { type: "button", id: "rollback", class: "secondary", disabled: !canWrite }, "Roll back production");

  const clear = () => { out.replaceChildren(); panel.querySelector("#action-result")?.remove(); };
  promote.addEventListener("click", async () => {
    clear();
    const answer = await confirmAction(`Promote ${model.name} v${v.version}?`,
      `Move version ${v.version} from ${v.stage} to ${next}, through the ${next} gate.`, { askReason: true });
    if (!answer) return;
    busy(promote, true);
    const r = await api("PUT", `${modelPath(model.name)}/stage`, { version: v.version, stage: next, reason: answer.reason });
    busy(promote, false);
    if (!r.ok) { out.append(errorBox(r.error)); return; }
    flash = `v${v.version} moved to ${next}.`;
    navigate(here);
  });
  rollback.addEventListener("click", async () => {
    clear();
    const answer = await confirmAction(`Roll back ${model.name}?`,
      "The previous production version goes back to production, and the current one to development.",
      { askReason: true, requireReason: true });
    if (!answer) return;
    busy(rollback, true);
    const r = await api("POST", `${modelPath(model.name)}/rollback`, { reason: answer.reason });
    busy(rollback, false);
    if (!r.ok) { out.append(errorBox(r.error)); return; }
    flash = `Rolled back: v${r.data.current_version} is in production again.`;
    navigate(here);
  });

  const done = flash ? h("div", { id: "action-result", class: "notice", role: "status" }, flash) : null;
  flash = null;
  panel.replaceChildren(...[
    h("div", { class: "toolbar" },
      h("h2", { class: "inline" }, "Version ", select), badge(v.stage), promote, rollback,
      canWrite ? null : h("span", { class: "muted" }, "Your role can read only.")),
    done,
    out,
    h("div", { class: "columns" },
      h("div", {}, h("h3", {}, "Lineage"), lineage(v, run)),
      h("div", {}, h("h3", {}, "Model card"),
        !detail.ok ? errorBox(detail.error)
          : card ? h("pre", { id: "model-card", class: "model-card" }, card)
            : h("p", { id: "model-card", class: "muted" }, "This version has no model card."))),
  ].filter(Boolean));
}

function busy(button, on) {
  button.disabled = on;
  button.setAttribute("aria-busy", on ? "true" : "false");
}

function lineage(v, run) {
  const tags = v.tags || {};
  const feast = Object.entries(tags).filter(([k]) => k.startsWith("feast.")).sort(([a], [b]) => a.localeCompare(b));
  const none = () => h("span", { class: "muted" }, "—");
  const rows = [
    ["Run", v.run_id
      ? [run ? h("a", { href: `#/runs/${encodeURIComponent(run.experiment_id)}`, id: "lineage-run" }, v.run_id) : h("code", { id: "lineage-run" }, v.run_id),
        run ? h("span", { class: "muted" }, ` (experiment ${run.experiment_id}${run.run_name ? `, ${run.run_name}` : ""})`) : null]
      : none()],
    ["Training job", tags.job_id ? h("code", { id: "lineage-job" }, tags.job_id) : none()],
    ["Training run", tags.training_run_id ? h("code", { id: "lineage-training-run" }, tags.training_run_id) : none()],
    ["Files", v.artifact_uri ? versionFiles(v.artifact_uri) : none()],
  ];
  return h("div", { id: "lineage" },
    h("dl", { class: "facts" }, rows.flatMap(([k, val]) => [h("dt", {}, k), h("dd", {}, val)])),
    h("h4", {}, "Feast features"),
    feast.length
      ? h("table", { id: "lineage-feast", class: "compact" },
        h("tbody", {}, feast.map(([k, val]) => h("tr", { dataset: { tag: k } }, h("td", {}, h("code", {}, k)), h("td", { class: "wrap" }, val)))))
      : h("p", { id: "lineage-feast", class: "muted" }, "No Feast features recorded."));
}

// The version's own files: artifact_uri is the API's listing of them (never a server
// path). Each downloads through the API with the session's credential, as a blob.
function versionFiles(listing) {
  const box = h("div", { id: "lineage-files" }, h("span", { class: "muted" }, "Loading…"));
  api("GET", listing).then((r) => {
    box.replaceChildren();
    if (!r.ok) { box.append(errorBox(r.error)); return; }
    const files = r.data.filter((f) => !f.is_dir);
    if (!files.length) { box.append(h("span", { class: "muted" }, "No files.")); return; }
    box.append(h("ul", { class: "files" }, files.map((f) => h("li", {},
      h("a", {
        href: "#", dataset: { path: f.path },
        onclick: (e) => { e.preventDefault(); download(`${listing}/${f.path.split("/").map(encodeURIComponent).join("/")}`, f.path); },
      }, f.path),
      f.file_size != null ? h("span", { class: "muted" }, ` ${f.file_size} bytes`) : null))));
  });
  return box;
}

async function download(url, name) {
  const r = await fetch(url, { headers: { Authorization: `Bearer ${session.credential}` } });
  if (!r.ok) return;
  const href = URL.createObjectURL(await r.blob());
  const a = h("a", { href, download: name.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(href);
}

// ------------------------------------------------------------------ history

async function renderHistory(main, name) {
  const r = await api("GET", `${modelPath(name)}/history`);
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/models" }, "Models"), " / ", h("a", { href: modelHash(name) }, name), " / history"),
    h("h1", {}, `${name}: stage history`));
  if (!r.ok) {
    main.append(h("div", { id: "model-error" }, errorBox(r.error)));
    return;
  }
  const moves = [...r.data.items].reverse(); // newest first
  const atInput = h("input", { id: "prod-at", type: "text", required: true, value: new Date().toISOString(), size: 30, "aria-label": "Time (ISO 8601)", spellcheck: "false" });
  const result = h("div", { id: "prod-at-result", "aria-live": "polite" });
  const form = h("form", { id: "prod-at-form", class: "card toolbar" },
    h("label", { for: "prod-at" }, "Which version served production at"), atInput,
    h("button", { type: "submit", id: "prod-at-submit" }, "Look up"), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren();
    const at = parseTime(atInput.value);
    if (!at) {
      result.append(errorBox({ code: "VALIDATION_ERROR", message: "Write a time such as 2026-11-22T10:00:00Z.", details: {} }));
      return;
    }
    const p = await api("GET", `${modelPath(name)}/production?at=${encodeURIComponent(at)}`);
    if (!p.ok) { result.append(errorBox(p.error)); return; }
    result.dataset.version = p.data.version || "";
    result.append(p.data.version
      ? h("span", {}, `At ${when(p.data.at)}: `, h("strong", {}, `v${p.data.version}`), " was in production.")
      : h("span", {}, `At ${when(p.data.at)}: no version was in production.`));
  });

  main.append(form, h("h2", {}, `Moves (${moves.length})`));
  if (!moves.length) {
    main.append(h("p", { id: "history", class: "card muted" }, "No stage moves yet."));
    return;
  }
  main.append(h("ol", { id: "history", class: "timeline" }, moves.map((m) => timelineItem(m, atInput))));
}

// An ISO time as the API reads it; a time without a zone is the browser's local time.
function parseTime(text) {
  const value = text.trim();
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : /([zZ]|[+-]\d\d:?\d\d)$/.test(value) ? value : date.toISOString();
}

function timelineItem(m, atInput) {
  const at = h("button", { type: "button", class: "link", title: "Look up production at this time" }, when(m.at));
  at.addEventListener("click", () => { atInput.value = m.at; atInput.focus(); });
  const evidence = m.evidence && Object.keys(m.evidence).length
    ? h("details", { class: "evidence" }, h("summary", {}, "Evidence"), h("pre", {}, JSON.stringify(m.evidence, null, 2)))
    : null;
  return h("li", { dataset: { move: String(m.id), version: m.version, to: m.to_stage } },
    h("div", { class: "when" }, at),
    h("div", { class: "what" },
      h("strong", {}, `v${m.version}`), " ",
      m.from_stage ? badge(m.from_stage) : h("span", { class: "muted" }, "new"), " → ", badge(m.to_stage),
      m.forced ? h("span", { class: "badge forced" }, "forced") : null,
      h("span", { class: "muted" }, ` by ${m.actor}`)),
    m.reason ? h("blockquote", { class: "reason" }, m.reason) : null,
    evidence);
}
