// Runs: the tenant's experiments, an experiment's runs, and a side-by-side comparison of
// runs with their metric histories overlaid.
//
//   #/runs                      experiments
//   #/runs/<experiment_id>      its runs; tick two or more and Compare
//   #/runs/compare?ids=a,b,...  params and metrics side by side, and one chart per metric
//
// The charts are drawn from the downsampled history (max_points ≈ the chart's width in
// pixels), never the full history: a run with a million points costs the browser the same
// as one with a thousand. Each uPlot instance is kept in window.__charts[<metric key>].
import { api, errorBox, h, navigate, number, when } from "../app.js";

const PAGE_SIZE = 100;
const KEY_METRICS = 5; // metric columns in an experiment's runs table
const DEFAULT_CHARTS = 6; // charts drawn at first; the others are a tick away
const MAX_POINTS = 1000; // never ask for more buckets than this, whatever the width
const PALETTE = ["#2952cc", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#b08800", "#495057", "#d6336c", "#5c940d"];
const USER_TAGS = ["matih.user_id", "mlflow.user"];

export async function render(main, { parts, query }) {
  await stylesheet(main, "/ui/static/pages/runs.css");
  if (parts[0] === "compare") return renderCompare(main, query);
  if (parts[0]) return renderExperiment(main, parts[0]);
  return renderExperiments(main);
}

// ------------------------------------------------------------------ experiments

async function renderExperiments(main) {
  const body = h("tbody");
  const more = h("div", { class: "more" });
  main.append(
    h("h1", {}, "Runs"),
    h("p", { class: "muted" }, "Experiments in this tenant. Open one to see its runs and compare them."),
    h("table", { id: "experiments-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Experiment"), h("th", {}, "ID"), h("th", {}, "Last update"), h("th", {}, "Created"))),
      body),
    more);

  async function load(token) {
    const q = new URLSearchParams({ max_results: String(PAGE_SIZE) });
    if (token) q.set("page_token", token);
    const r = await api("GET", `/api/v1/experiments?${q}`);
    more.replaceChildren();
    if (!r.ok) { more.append(errorBox(r.error)); return; }
    for (const e of r.data.items) {
      body.append(h("tr", { dataset: { experiment: e.experiment_id } },
        h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(e.experiment_id)}` }, e.name)),
        h("td", { class: "id" }, e.experiment_id),
        h("td", { class: "nowrap" }, when(e.last_update_time)),
        h("td", { class: "nowrap" }, when(e.creation_time))));
    }
    if (!body.children.length) {
      body.append(h("tr", { id: "no-experiments" }, h("td", { colspan: 4, class: "muted" },
        "No experiments yet. A run logged to an experiment creates it.")));
    }
    if (r.data.next_page_token) {
      more.append(h("button", { type: "button", class: "secondary", id: "more-experiments", onclick: () => load(r.data.next_page_token) }, "More"));
    }
  }
  await load(null);
}

// ------------------------------------------------------------------ one experiment

async function renderExperiment(main, experimentId) {
  const [exp, first] = await Promise.all([
    api("GET", `/api/v1/experiments/${encodeURIComponent(experimentId)}`),
    api("GET", `/api/v1/experiments/${encodeURIComponent(experimentId)}/runs?max_results=${PAGE_SIZE}`),
  ]);
  main.append(crumbs([["#/runs", "Runs"]]));
  if (!exp.ok || !first.ok) { main.append(errorBox((exp.ok ? first : exp).error)); return; }

  const runs = [...first.data.items];
  const selected = new Set();
  const compare = h("button", { type: "button", id: "compare", disabled: true }, "Compare");
  const hint = h("span", { class: "muted", id: "compare-hint" }, "Tick two or more runs to compare them.");
  compare.addEventListener("click", () => {
    // Oldest first: a baseline and the runs that tried to beat it, in that order.
    const ids = runs.filter((r) => selected.has(r.run_id))
      .sort((a, b) => (a.start_time ?? 0) - (b.start_time ?? 0)).map((r) => r.run_id);
    navigate(`#/runs/compare?ids=${ids.join(",")}`);
  });
  const all = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all runs" });
  const holder = h("div", { class: "scroll" });
  const more = h("div", { class: "more" });

  function refresh() {
    compare.disabled = selected.size < 2;
    compare.textContent = selected.size ? `Compare ${selected.size} runs` : "Compare";
    hint.hidden = selected.size >= 2;
    all.checked = runs.length > 0 && selected.size === runs.length;
    all.indeterminate = selected.size > 0 && selected.size < runs.length;
  }
  all.addEventListener("change", () => {
    for (const r of runs) if (all.checked) selected.add(r.run_id); else selected.delete(r.run_id);
    draw();
  });

  function draw() {
    const keys = keyMetrics(runs);
    const head = h("tr", {}, h("th", { class: "pick" }, all), h("th", {}, "Run"), h("th", {}, "Status"),
      h("th", {}, "Started"), h("th", {}, "User"), keys.map((k) => h("th", { class: "num", title: k }, k)));
    const rows = runs.map((r) => {
      const box = h("input", { type: "checkbox", name: "run", value: r.run_id, "aria-label": `Select ${runName(r)}`, checked: selected.has(r.run_id) });
      box.addEventListener("change", () => {
        if (box.checked) selected.add(r.run_id); else selected.delete(r.run_id);
        row.classList.toggle("selected", box.checked);
        refresh();
      });
      const row = h("tr", { dataset: { run: r.run_id }, class: selected.has(r.run_id) ? "selected" : null },
        h("td", { class: "pick" }, box),
        h("td", {}, h("div", { class: "run-name" }, runName(r)), h("div", { class: "id" }, r.run_id)),
        h("td", {}, status(r.status)),
        h("td", { class: "nowrap" }, when(r.start_time)),
        h("td", { class: "who" }, runUser(r)),
        keys.map((k) => h("td", { class: "num", title: k in r.metrics ? String(r.metrics[k]) : null }, k in r.metrics ? number(r.metrics[k]) : "–")));
      // A click anywhere on the row ticks its box.
      row.addEventListener("click", (event) => {
        if (event.target.closest("input, a, button")) return;
        box.click();
      });
      return row;
    });
    if (!rows.length) rows.push(h("tr", { id: "no-runs" }, h("td", { colspan: 5 + keys.length, class: "muted" }, "No runs in this experiment yet.")));
    holder.replaceChildren(h("table", { id: "runs-table" }, h("thead", {}, head), h("tbody", {}, rows)));
    refresh();
  }

  async function loadMore(token) {
    more.replaceChildren();
    const r = await api("GET", `/api/v1/experiments/${encodeURIComponent(experimentId)}/runs?max_results=${PAGE_SIZE}&page_token=${encodeURIComponent(token)}`);
    if (!r.ok) { more.append(errorBox(r.error)); return; }
    runs.push(...r.data.items);
    draw();
    moreButton(r.data.next_page_token);
  }
  function moreButton(token) {
    if (token) more.replaceChildren(h("button", { type: "button", class: "secondary", id: "more-runs", onclick: () => loadMore(token) }, "More runs"));
  }

  main.append(
    h("h1", {}, exp.data.name),
    h("p", { class: "muted" }, `Experiment ${exp.data.experiment_id}`,
      exp.data.last_update_time ? ` · last update ${when(exp.data.last_update_time)}` : ""),
    h("div", { class: "toolbar" }, compare, hint),
    holder, more);
  draw();
  moreButton(first.data.next_page_token);
}

// The metric columns of a runs table: the keys most runs have, then by name.
function keyMetrics(runs) {
  const count = new Map();
  for (const r of runs) for (const k of Object.keys(r.metrics)) count.set(k, (count.get(k) || 0) + 1);
  return [...count.keys()].sort((a, b) => count.get(b) - count.get(a) || a.localeCompare(b)).slice(0, KEY_METRICS);
}

// ------------------------------------------------------------------ comparison

async function renderCompare(main, query) {
  for (const u of Object.values(window.__charts || {})) u.destroy();
  window.__charts = {};
  const ids = [...new Set((query.get("ids") || "").split(",").map((s) => s.trim()).filter(Boolean))];
  const trail = crumbs([["#/runs", "Runs"]]);
  main.append(trail, h("h1", {}, "Compare runs"));
  if (!ids.length) {
    main.append(errorBox({ code: "VALIDATION_ERROR", message: "No runs to compare: open an experiment and tick two or more runs.", details: {} }));
    return;
  }

  // The runs themselves (their metric keys, start, user), then the comparison of exactly
  // those metrics: one query for every run's params and latest values.
  const got = await pool(ids.map((id) => () => api("GET", `/api/v1/runs/${encodeURIComponent(id)}`)));
  const failed = got.map((r, i) => [r, ids[i]]).filter(([r]) => !r.ok);
  if (failed.length) {
    const [r] = failed[0];
    const missing = failed.filter(([x]) => x.status === 404).map(([, id]) => id);
    main.append(errorBox(missing.length
      ? { code: r.error.code, message: `Run(s) not found: ${missing.join(", ")}.`, details: { run_ids: missing } }
      : r.error));
    return;
  }
  const runs = got.map((r) => r.data);
  const metricKeys = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort();
  const q = new URLSearchParams({ run_ids: ids.join(","), metrics: metricKeys.join(",") });
  const experiments = [...new Set(runs.map((r) => r.experiment_id))];
  const [cmp, exp] = await Promise.all([
    api("GET", `/api/v1/experiments/compare?${q}`),
    experiments.length === 1 ? api("GET", `/api/v1/experiments/${encodeURIComponent(experiments[0])}`) : null,
  ]);
  if (!cmp.ok) { main.append(errorBox(cmp.error)); return; }
  if (exp) trail.append(" › ", h("a", { href: `#/runs/${encodeURIComponent(experiments[0])}` }, exp.ok ? exp.data.name : `Experiment ${experiments[0]}`));

  const columns = cmp.data.map((row, i) => {
    const run = runs[i];
    return { id: row.run_id, name: row.run_name || row.run_id.slice(0, 8), status: row.status, run, params: row.parameters, metrics: row.metrics, color: PALETTE[i % PALETTE.length] };
  });
  // Two runs with one name are told apart by their ids in the legend and the header.
  const names = new Map();
  for (const c of columns) names.set(c.name, (names.get(c.name) || 0) + 1);
  for (const c of columns) c.label = names.get(c.name) > 1 ? `${c.name} (${c.id.slice(0, 6)})` : c.name;


  const { tableEl, toggle, summary } = compareTable(columns, metricKeys);
  main.append(
    h("div", { class: "toolbar" },
      h("label", { class: "toggle" }, toggle, " Only differences"),
      summary),
    h("div", { class: "scroll" }, tableEl));

  await renderCharts(main, columns, metricKeys);
}

function compareTable(columns, metricKeys) {
  const head = [
    h("tr", {}, h("th", { scope: "col" }, "Run"), columns.map((c) => h("th", { scope: "col", dataset: { run: c.id } },
      h("div", { class: "run-name" }, swatch(c.color), c.label), h("div", { class: "id" }, c.id)))),
    h("tr", { class: "info" }, h("th", { scope: "row" }, "Status"), columns.map((c) => h("td", {}, status(c.status)))),
    h("tr", { class: "info" }, h("th", { scope: "row" }, "Started"), columns.map((c) => h("td", { class: "nowrap" }, when(c.run.start_time)))),
    h("tr", { class: "info" }, h("th", { scope: "row" }, "Duration"), columns.map((c) => h("td", {}, duration(c.run)))),
    h("tr", { class: "info" }, h("th", { scope: "row" }, "User"), columns.map((c) => h("td", { class: "who" }, runUser(c.run)))),
  ];
  const paramKeys = [...new Set(columns.flatMap((c) => Object.keys(c.params)))].sort();
  const rows = [];
  const sections = [];
  function section(title, kind, keys, value, show) {
    const header = h("tr", { class: "section" }, h("th", { colspan: columns.length + 1 }, `${title} (${keys.length})`));
    const own = [];
    rows.push(header);
    if (!keys.length) rows.push(h("tr", { class: "info" }, h("td", { colspan: columns.length + 1, class: "muted" }, `No ${title.toLowerCase()}.`)));
    for (const k of keys) {
      const values = columns.map((c) => value(c, k));
      const differs = new Set(values.map((v) => (v === undefined || v === null ? "\u0000missing" : String(v)))).size > 1;
      const row = h("tr", { class: differs ? "differs" : "same", dataset: { kind, key: k } },
        h("th", { scope: "row", title: k }, k),
        values.map((v) => (v === undefined || v === null
          ? h("td", { class: "missing" }, "–")
          : h("td", { class: kind === "metric" ? "num" : null, title: String(v) }, show(v)))));
      own.push(row);
      rows.push(row);
    }
    sections.push({ header, rows: own });
  }
  section("Parameters", "param", paramKeys, (c, k) => c.params[k], (v) => v);
  section("Metrics", "metric", metricKeys, (c, k) => c.metrics[k], (v) => number(v));

  const all = sections.flatMap((s) => s.rows);
  const differing = all.filter((r) => r.classList.contains("differs")).length;
  const summary = h("span", { class: "muted", id: "differences-summary" }, `${differing} of ${all.length} rows differ`);
  const toggle = h("input", { type: "checkbox", id: "only-differences" });
  toggle.addEventListener("change", () => {
    for (const s of sections) {
      for (const r of s.rows) r.hidden = toggle.checked && !r.classList.contains("differs");
      s.header.classList.toggle("all-equal", toggle.checked && s.rows.length > 0 && s.rows.every((r) => r.hidden));
    }
  });
  const tableEl = h("table", { id: "compare-table" }, h("thead", {}, head), h("tbody", {}, rows));
  return { tableEl, toggle, summary };
}

// ------------------------------------------------------------------ charts

async function renderCharts(main, columns, metricKeys) {
  const owners = new Map(metricKeys.map((k) => [k, columns.filter((c) => k in c.run.metrics)]));
  // Keys two or more runs share come first: they are what an overlay is for.
  const keys = [...metricKeys].sort((a, b) => (owners.get(b).length > 1) - (owners.get(a).length > 1) || a.localeCompare(b));
  const grid = h("div", { class: "charts", id: "charts" });
  const picks = h("div", { class: "chips", id: "chart-metrics", role: "group", "aria-label": "Metrics to chart" });
  main.append(
    h("h2", {}, "Metric history"),
    h("p", { class: "muted" }, "Each line is a run's mean per bucket of steps, the band its min–max; drag across a chart to zoom, double-click to reset."),
    picks, grid);
  if (!keys.length) { grid.append(h("p", { class: "muted", id: "no-charts" }, "These runs log no metrics.")); return; }

  const boxes = new Map();
  const ticks = new Map();
  // ``auto``: drawn because it is among the first keys, not because it was ticked. A key
  // with at most one value per run is then left to the table (a chart of dots says less).
  async function show(key, on, auto = false) {
    if (!on) {
      window.__charts[key]?.destroy();
      delete window.__charts[key];
      boxes.get(key)?.remove();
      boxes.delete(key);
      return;
    }
    document.getElementById("no-charts")?.remove();
    const box = h("div", { class: "chart", dataset: { metric: key } });
    boxes.set(key, box);
    // Keep the grid in the order of the ticks.
    const after = keys.slice(keys.indexOf(key) + 1).map((k) => boxes.get(k)).find(Boolean);
    grid.insertBefore(box, after || null);
    const drawn = await drawChart(box, key, owners.get(key), auto);
    if (!drawn && auto) {
      box.remove();
      boxes.delete(key);
      ticks.get(key).checked = false;
      ticks.get(key).parentElement.classList.add("single");
      ticks.get(key).parentElement.title = "One value per run: see the table (tick to chart it anyway)";
    }
  }
  const initial = keys.slice(0, DEFAULT_CHARTS);
  for (const k of keys) {
    const tick = h("input", { type: "checkbox", checked: initial.includes(k), dataset: { metric: k } });
    ticks.set(k, tick);
    tick.addEventListener("change", () => show(k, tick.checked));
    picks.append(h("label", { class: "chip", title: owners.get(k).length > 1 ? null : "Only one run logs this metric" }, tick, " ", k));
  }
  await Promise.all(initial.map((k) => show(k, true, true)));
  if (!grid.children.length) grid.append(h("p", { class: "muted", id: "no-charts" }, "These metrics have one value per run (see the table); tick one to chart it."));
}

// Resolves to false, drawing nothing, when ``skipSingle`` and no run has two points.
async function drawChart(box, key, columns, skipSingle) {
  const title = h("strong", {}, key);
  const meta = h("span", { class: "muted chart-meta" });
  const plot = h("div", { class: "plot" });
  box.append(h("div", { class: "chart-head" }, title, meta), plot);
  const width = Math.max(200, Math.floor(plot.clientWidth || box.clientWidth || 600));
  const maxPoints = Math.min(MAX_POINTS, width);

  const histories = await pool(columns.map((c) => () => api("GET",
    `/api/v1/runs/${encodeURIComponent(c.id)}/metrics/${encodeURIComponent(key)}/history?max_points=${maxPoints}`)));
  if (!box.isConnected) return true;
  const failed = histories.find((r) => !r.ok);
  if (failed) {
    const slash = failed.status === 404 && key.includes("/");
    plot.append(errorBox(slash ? { ...failed.error, message: `The history endpoint does not take metric keys with '/' (${key}).` } : failed.error));
    return true;
  }
  if (skipSingle && histories.every((r) => r.data.total <= 1)) return false;

  // One x array for all the runs (the union of their bucket midpoints); a run has null
  // where another has a bucket, and its line spans the gaps.
  const per = histories.map((r) => r.data.buckets.map((b) => ({ x: (b.step_min + b.step_max) / 2, ...b })));
  const xs = [...new Set(per.flatMap((bs) => bs.map((b) => b.x)))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const ys = per.map((bs) => {
    const y = new Array(xs.length).fill(null);
    for (const b of bs) y[at.get(b.x)] = b.mean;
    return y;
  });
  const totals = histories.map((r) => r.data.total);
  const points = per.reduce((n, bs) => n + bs.length, 0);
  meta.textContent = `${totals.reduce((a, b) => a + b, 0).toLocaleString("en-US")} points · ${points.toLocaleString("en-US")} drawn`;
  box.dataset.total = String(Math.max(...totals));

  const bandsOf = per.map((bs) => (bs.some((b) => b.count > 1) ? bs : null));
  const opts = {
    width,
    height: 260,
    scales: { x: { time: false }, y: { range: (u, lo, hi) => yRange(u, lo, hi, bandsOf) } },
    axes: [{ label: "step", labelSize: 18, size: 36 }, { size: 64, values: (u, vals) => vals.map((v) => number(v)) }],
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    series: [
      { label: "step", value: (u, v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US")) },
      ...columns.map((c, i) => ({
        label: c.label,
        stroke: c.color,
        width: 1.5,
        spanGaps: true,
        points: { show: per[i].length <= 60, size: 5 },
        value: (u, v) => (v == null ? "–" : String(number(v))),
      })),
    ],
    hooks: { drawAxes: [(u) => drawBands(u, columns, bandsOf)] },
  };
  const u = new window.uPlot(opts, [xs, ...ys], plot);
  window.__charts[key] = u;
  const observer = new ResizeObserver(() => {
    if (!box.isConnected) { observer.disconnect(); return; }
    const w = Math.floor(plot.clientWidth);
    if (w > 0 && Math.abs(w - u.width) > 2) u.setSize({ width: w, height: 260 });
  });
  observer.observe(plot);
  return true;
}

// The y range also holds the min–max bands of the buckets in view.
function yRange(u, lo, hi, bandsOf) {
  const x0 = u.scales.x.min ?? -Infinity;
  const x1 = u.scales.x.max ?? Infinity;
  for (const bs of bandsOf) {
    if (!bs) continue;
    for (const b of bs) {
      if (b.x < x0 || b.x > x1) continue;
      lo = lo == null ? b.min : Math.min(lo, b.min);
      hi = hi == null ? b.max : Math.max(hi, b.max);
    }
  }
  if (lo == null || hi == null) return [0, 1];
  return window.uPlot.rangeNum(lo, hi, 0.1, true);
}

// Under each run's line, the band between its buckets' min and max.
function drawBands(u, columns, bandsOf) {
  const ctx = u.ctx;
  ctx.save();
  ctx.beginPath();
  ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
  ctx.clip();
  bandsOf.forEach((bs, i) => {
    if (!bs || !u.series[i + 1].show) return;
    ctx.beginPath();
    bs.forEach((b, j) => {
      const x = u.valToPos(b.x, "x", true);
      const y = u.valToPos(b.max, "y", true);
      if (j === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    for (let j = bs.length - 1; j >= 0; j--) ctx.lineTo(u.valToPos(bs[j].x, "x", true), u.valToPos(bs[j].min, "y", true));
    ctx.closePath();
    ctx.globalAlpha = 0.14;
    ctx.fillStyle = columns[i].color;
    ctx.fill();
  });
  ctx.restore();
}

// ------------------------------------------------------------------ helpers

function stylesheet(main, href) {
  return new Promise((resolve) => main.append(h("link", { rel: "stylesheet", href, onload: resolve, onerror: resolve })));
}

function crumbs(links) {
  return h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, links.flatMap(([href, text], i) => [i ? " › " : null, h("a", { href }, text)]));
}

function runName(r) {
  return r.run_name || r.run_id.slice(0, 8);
}

function runUser(r) {
  for (const t of USER_TAGS) if (r.tags && r.tags[t]) return r.tags[t];
  return "";
}

function status(s) {
  return h("span", { class: `status status-${String(s).toLowerCase()}`, dataset: { status: s } }, s);
}

function swatch(color) {
  const s = h("span", { class: "swatch", "aria-hidden": "true" });
  s.style.background = color;
  return s;
}

function duration(run) {
  if (!run.start_time) return "";
  if (!run.end_time) return run.status === "RUNNING" ? "running" : "";
  const s = Math.max(0, (run.end_time - run.start_time) / 1000);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

// Runs the tasks at most ``limit`` at a time (the browser's own limit per host is six).
async function pool(tasks, limit = 6) {
  const out = new Array(tasks.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]();
    }
  }));
  return out;
}
