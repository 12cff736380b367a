// Monitoring: the tenant's served models with their figures (#/monitoring), and one
// model's served versions in detail (#/monitoring/<model>): drift per feature (PSI, KS),
// latency p50/p95 against the SLA, error rate, requests, and the checks in alarm.
// Every figure is the API's (GET /api/v1/models/{id}/monitoring, which runs the checks).
import { api, badge, errorBox, h, number } from "../app.js";

const CHECKS = {
  drift: "Drift",
  latency: "Latency",
  error_rate: "Error rate",
};
// The documented thresholds (docs/serving.md), replaced by the ones each answer of the
// monitoring endpoint carries (the server's own).
let PSI_ALARM = 0.2;
let KS_ALARM = 0.01;
let ERROR_ALARM = 0.01;

function useThresholds(f) {
  const t = (f && f.thresholds) || {};
  if (typeof t.psi === "number") PSI_ALARM = t.psi;
  if (typeof t.ks_pvalue === "number") KS_ALARM = t.ks_pvalue;
  if (typeof t.error_rate === "number") ERROR_ALARM = t.error_rate;
}
const PARALLEL = 4;

export async function render(main, { parts, query }) {
  await stylesheet(main, "/ui/static/pages/monitoring.css");
  if (parts.length) await detail(main, parts[0], query.get("version"));
  else await overview(main);
}

// ------------------------------------------------------------------ the list

async function overview(main) {
  main.append(
    h("h1", {}, "Monitoring"),
    h("p", { class: "muted" },
      "Each production version's live figures in this replica's window of recent traffic. ",
      "Open a model for drift per feature and its staging version."));
  const models = await allModels();
  if (!models.ok) { main.append(errorBox(models.error)); return; }
  const served = models.items.filter((m) => m.stage === "production" || m.stage === "staging");
  const others = models.items.length - served.length;
  if (!served.length) {
    main.append(h("p", { class: "empty muted", id: "monitoring-empty" },
      models.items.length
        ? `None of the ${models.items.length} models has a version in staging or production: nothing is served.`
        : "No model yet."));
    return;
  }
  const figures = await pool(served, (m) => m.stage === "production"
    ? api("GET", `/api/v1/models/${encodeURIComponent(m.model_id)}/monitoring`)
    : Promise.resolve(null));
  const head = ["Model", "Version", "Requests", "Latency p50", "Latency p95 (SLA)", "Error rate", "Drift", "Alerts"];
  main.append(h("table", { id: "monitoring-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, served.map((m, i) => overviewRow(m, figures[i])))));
  if (others) {
    main.append(h("p", { class: "muted" },
      `${others} other model${others === 1 ? "" : "s"} with no version in staging or production.`));
  }
}

function overviewRow(m, r) {
  const link = h("a", { href: `#/monitoring/${encodeURIComponent(m.model_id)}` }, m.model_id);
  const row = (...cells) => h("tr", { dataset: { model: m.model_id } }, h("td", {}, link), ...cells);
  if (r === null) {
    return row(h("td", {}, `v${m.current_version} `, badge(m.stage)),
      h("td", { colspan: 6, class: "muted" }, "Not in production; open the model for its staging version."));
  }
  if (!r.ok) return row(h("td", {}, ""), h("td", { colspan: 6 }, errorBox(r.error)));
  const f = r.data;
  useThresholds(f);
  const version = h("td", {}, `v${f.version} `, badge("production"));
  if (!f.requests) {
    return row(version, h("td", { colspan: 6, class: "no-traffic" }, "No traffic yet."));
  }
  const open = Object.keys(CHECKS).filter((c) => f.alarms[c] === true);
  return row(version,
    h("td", { class: "num" }, String(f.requests)),
    h("td", { class: "num" }, ms(f.latency_p50_ms)),
    h("td", { class: "num" }, ms(f.latency_p95_ms), f.sla_ms ? h("span", { class: "muted" }, ` (${ms(f.sla_ms)})`) : null),
    h("td", { class: "num" }, percent(f.error_rate)),
    h("td", {}, driftSummary(f)),
    h("td", {}, open.length
      ? open.map((c) => h("span", { class: "alert-chip", dataset: { check: c } }, CHECKS[c]))
      : h("span", { class: "muted" }, "none")));
}

function driftSummary(f) {
  const features = Object.values(f.features);
  if (!features.length) return h("span", { class: "muted" }, f.reference ? "too few rows" : "no reference");
  const worst = Math.max(...features.map((x) => x.psi));
  const drifted = features.filter((x) => x.drifted).length;
  return h("span", { class: drifted ? "bad" : "" },
    `max PSI ${number(worst)}`, drifted ? `, ${drifted} drifted` : "");
}

async function allModels() {
  const items = [];
  let token = null;
  for (let i = 0; i < 20; i++) {
    const q = new URLSearchParams({ max_results: "1000" });
    if (token) q.set("page_token", token);
    const r = await api("GET", `/api/v1/models?${q}`);
    if (!r.ok) return r;
    items.push(...r.data.items);
    token = r.data.next_page_token;
    if (!token) break;
  }
  return { ok: true, items };
}

// ------------------------------------------------------------------ one model

async function detail(main, model, only) {
  const base = `/api/v1/models/${encodeURIComponent(model)}`;
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/monitoring" }, "Monitoring"), " / ", model));
  main.append(h("h1", {}, `Monitoring: ${model}`));
  const versions = await api("GET", `${base}/versions`);
  if (!versions.ok) { main.append(errorBox(versions.error)); return; }
  const order = { production: 0, staging: 1 };
  let served = versions.data.items.filter((v) => v.stage in order)
    .sort((a, b) => order[a.stage] - order[b.stage] || Number(b.version) - Number(a.version));
  if (only) served = versions.data.items.filter((v) => v.version === only);
  if (!served.length) {
    main.append(h("p", { class: "empty muted", id: "monitoring-empty" },
      only ? `Version ${only} of ${model} does not exist.` : `No version of ${model} is in staging or production: nothing is served.`));
    return;
  }
  const figures = await pool(served, (v) => api("GET", `${base}/monitoring?version=${encodeURIComponent(v.version)}`));
  const panels = served.map((v, i) => h("section", { class: "card version-panel", dataset: { version: v.version, stage: v.stage } }));
  main.append(...panels);
  served.forEach((v, i) => fillPanel(panels[i], v, figures[i]));
}

function fillPanel(panel, v, r) {
  panel.append(h("h2", {}, `Version ${v.version} `, badge(v.stage)));
  if (!r.ok) { panel.append(errorBox(r.error)); return; }
  const f = r.data;
  useThresholds(f);
  if (!f.requests) {
    panel.append(h("p", { class: "no-traffic" },
      `No traffic yet: version ${v.version} has answered no request in this replica's window.`));
    return;
  }
  panel.append(alerts(f));
  panel.append(h("div", { class: "figures" },
    figure("Requests", String(f.requests), `window: last ${f.window}`, "requests"),
    figure("Latency p50", ms(f.latency_p50_ms), null, "p50"),
    figure("Latency p95", ms(f.latency_p95_ms), f.sla_ms ? `SLA ${ms(f.sla_ms)}` : "no SLA", "p95", f.alarms.latency === true),
    figure("Error rate", percent(f.error_rate), `alarm over ${percent(ERROR_ALARM)}`, "error-rate", f.alarms.error_rate === true),
    figure("Prediction shift", f.prediction_shift === null ? "—" : `${number(f.prediction_shift)} σ`, "alarm over 2 σ", "shift")));
  panel.append(h("h3", {}, "Drift per feature"));
  const features = Object.entries(f.features);
  if (!f.reference) {
    panel.append(h("p", { class: "muted" }, "No reference profile was stored at registration: drift cannot be measured."));
    return;
  }
  if (!features.length) {
    panel.append(h("p", { class: "muted" }, "Too few rows in the window to judge drift yet (it needs 50)."));
    return;
  }
  features.sort((a, b) => a[0].localeCompare(b[0], undefined, { numeric: true }));
  const chart = h("div", { class: "chart", dataset: { chart: "psi" } });
  panel.append(chart, featureTable(v.version, features));
  psiChart(chart, features);
}

function alerts(f) {
  const box = h("div", { class: "checks" });
  for (const [check, label] of Object.entries(CHECKS)) {
    const alarm = f.alarms[check];
    const episodes = f.episodes[check] || 0;
    if (alarm === true) {
      box.append(h("div", { class: "alert", role: "alert", dataset: { check } },
        h("strong", {}, `${label} alert`), " ", alertText(check, f),
        h("span", { class: "muted" }, ` (episode ${episodes})`)));
    } else {
      box.append(h("span", { class: `check check-${alarm === false ? "ok" : "unknown"}`, dataset: { check } },
        `${label}: ${alarm === false ? "ok" : "not enough traffic to judge"}`,
        episodes ? ` · ${episodes} past episode${episodes === 1 ? "" : "s"}` : ""));
    }
  }
  return box;
}

function alertText(check, f) {
  if (check === "drift") {
    const drifted = Object.entries(f.features).filter(([, x]) => x.drifted).map(([n]) => n);
    return drifted.length
      ? `${drifted.length} feature${drifted.length === 1 ? "" : "s"} drifted (PSI > ${PSI_ALARM}, KS p < ${KS_ALARM}): ${drifted.join(", ")}.`
      : `the mean prediction moved ${number(f.prediction_shift)} reference standard deviations.`;
  }
  if (check === "latency") return `p95 ${ms(f.latency_p95_ms)} is over the SLA of ${ms(f.sla_ms)}.`;
  return `${percent(f.error_rate)} of the last ${f.window} requests failed (alarm over ${percent(ERROR_ALARM)}).`;
}

function figure(label, value, note, key, bad = false) {
  return h("div", { class: `figure${bad ? " bad" : ""}`, dataset: { figure: key } },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, value),
    note ? h("div", { class: "note muted" }, note) : null);
}

function featureTable(version, features) {
  const head = ["Feature", "PSI", "KS statistic", "KS p-value", "Drifted"];
  return h("table", { class: "features", id: `features-v${version}` },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, features.map(([name, x]) => h("tr", { dataset: { feature: name }, class: x.drifted ? "drifted" : null },
      h("td", {}, name),
      h("td", { class: "num psi" }, String(number(x.psi))),
      h("td", { class: "num" }, x.ks_statistic === undefined ? "—" : String(number(x.ks_statistic))),
      h("td", { class: "num" }, x.ks_pvalue === undefined ? "— (categorical)" : String(number(x.ks_pvalue))),
      h("td", {}, x.drifted ? h("span", { class: "bad" }, "yes") : "no")))));
}

// PSI per feature as bars (red where the feature drifted), with the alarm threshold.
function psiChart(el, features) {
  const names = features.map(([n]) => n);
  const xs = names.map((_, i) => i);
  const psi = features.map(([, x]) => (x.drifted ? null : x.psi));
  const drifted = features.map(([, x]) => (x.drifted ? x.psi : null));
  const top = Math.max(PSI_ALARM * 1.25, ...features.map(([, x]) => x.psi)) * 1.1;
  const bars = window.uPlot.paths.bars({ size: [0.6, 80] });
  const many = names.length > 12;
  const width = () => Math.max(300, el.clientWidth - 12);
  const opts = {
    width: width(),
    height: 240,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false, range: [-0.5, names.length - 0.5] }, y: { range: [0, top] } },
    axes: [
      {
        splits: () => xs,
        values: (u, splits) => splits.map((i) => names[i] ?? ""),
        grid: { show: false },
        rotate: many ? -60 : 0,
        size: many ? 90 : 40,
      },
      { label: "PSI", values: (u, splits) => splits.map((v) => +v.toFixed(3)) },
    ],
    series: [
      { label: "feature", value: (u, i) => (i === null ? "" : names[i] ?? "") },
      { label: "PSI", fill: "rgba(41, 82, 204, 0.75)", stroke: "#2952cc", paths: bars, points: { show: false } },
      { label: "PSI (drifted)", fill: "rgba(217, 45, 32, 0.8)", stroke: "#b42318", paths: bars, points: { show: false } },
    ],
    hooks: {
      draw: [(u) => {
        // The alarm threshold across the plot.
        const y = Math.round(u.valToPos(PSI_ALARM, "y", true));
        const { ctx } = u;
        ctx.save();
        ctx.strokeStyle = "#e07b00";
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
        ctx.restore();
      }],
    },
  };
  const plot = new window.uPlot(opts, [xs, psi, drifted], el);
  el.append(h("p", { class: "muted legend-note" }, `Dashed line: the PSI alarm threshold (${PSI_ALARM}).`));
  new ResizeObserver(() => {
    if (el.isConnected) plot.setSize({ width: width(), height: 240 });
  }).observe(el);
}

// ------------------------------------------------------------------ helpers

// Run fn over items, at most PARALLEL at a time; results in the items' order.
async function pool(items, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
  return out;
}

function ms(v) {
  if (v === null || v === undefined) return "—";
  return v >= 100 ? `${Math.round(v)} ms` : `${+v.toPrecision(3)} ms`;
}

function percent(v) {
  if (v === null || v === undefined) return "—";
  return `${+(v * 100).toPrecision(3)} %`;
}

// The page's own styles, loaded before the page shows (so a screenshot sees them).
function stylesheet(main, href) {
  return new Promise((resolve) => main.append(h("link", { rel: "stylesheet", href, onload: resolve, onerror: resolve })));
}
