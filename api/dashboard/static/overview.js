// Overview: the paper's figures over the warehouse's runs, with filters; each chart's numbers download.
import { apiAll, apiKnown, card, chart, escapeHtml, fail, frame, servedRoutes } from "./common.js";
import { CHARTS } from "./charts.js";

const main = frame("Overview", "Overview");
main.innerHTML = `<h1>Collaboration overview</h1>
  <form class="filters" id="filters" aria-label="filters">
    <label>experiment <select name="experiment"></select></label>
    <label>method <select name="method"><option value="">all</option></select></label>
    <label>dataset <select name="dataset"><option value="">all</option></select></label>
    <label>router <select name="router"><option value="">all</option></select></label>
    <span class="muted" id="filter-note"></span>
  </form>
  <div class="grid" id="charts"></div>`;

const grid = document.getElementById("charts");
const cards = new Map(CHARTS.map((c) => [c.id, card(grid, c)]));

/** The experiment selector: every experiment, the most recent (the analyses' default) chosen first. */
async function fillExperiments() {
  const select = document.getElementById("filters").elements.experiment;
  const keep = select.value;
  const { data } = await apiKnown("/v1/experiments", {});
  select.innerHTML = data
    .map((e) => `<option value="${escapeHtml(e.experiment)}">${escapeHtml(e.experiment)} (${e.runs} runs${e.excluded ? `, ${e.excluded} excluded` : ""})</option>`)
    .join("");
  const names = data.map((e) => e.experiment);
  select.value = names.includes(keep) ? keep : (data.find((e) => e.is_default)?.experiment ?? names[0] ?? "");
}

/** Fill each filter's options with the values the runs of the chosen experiment have. */
function fillFilters(all) {
  const form = document.getElementById("filters");
  const runs = inExperiment(all);
  for (const name of ["method", "dataset", "router"]) {
    const select = form.elements[name];
    const keep = select.value;
    const values = [...new Set(runs.map((r) => r[name]))].sort();
    select.innerHTML = `<option value="">all</option>` + values.map((v) => `<option>${escapeHtml(v)}</option>`).join("");
    select.value = values.includes(keep) ? keep : "";
  }
}

function filters() {
  const form = document.getElementById("filters");
  return Object.fromEntries(["experiment", "method", "dataset", "router"].map((n) => [n, form.elements[n].value || null]));
}

/** The runs the analyses read: the chosen experiment's, not excluded. */
function inExperiment(runs) {
  const experiment = document.getElementById("filters").elements.experiment.value;
  return runs.filter((r) => r.experiment === experiment && !r.excluded);
}

let generation = 0;

/** Draw every chart for the current filters; a chart whose route this server lacks says so. */
async function drawAll(runs) {
  const mine = ++generation; // a newer draw (filter change, new runs) wins over this one
  document.body.dataset.ready = "";
  const f = filters();
  const paths = await servedRoutes();
  const selected = inExperiment(runs).filter(
    (r) => r.status === "complete" && ["method", "dataset", "router"].every((k) => !f[k] || r[k] === f[k])
  );
  document.getElementById("filter-note").textContent = `${selected.length} complete run(s) selected`;
  const memo = new Map();
  const base = {
    filters: f,
    runs: selected,
    api: apiKnown,
    memo: (key, fn) => (memo.has(key) ? memo.get(key) : memo.set(key, fn()).get(key)),
  };
  await Promise.all(
    CHARTS.map(async (c) => {
      const el = cards.get(c.id);
      const missing = c.routes.filter((p) => !paths.has(p));
      if (missing.length) {
        fail(el, `this server does not serve ${missing.join(", ")}`);
        return;
      }
      try {
        const note = el.querySelector(".note");
        const detail = el.querySelector(".detail");
        note.textContent = c.note;
        detail.innerHTML = "";
        const { rows, spec } = await c.load({
          ...base,
          note: (text) => (note.textContent = [c.note, text].filter(Boolean).join(" ")),
          detail: (html) => mine === generation && (detail.innerHTML = html),
        });
        const empty = runs.length ? undefined : "No runs yet: collect some (python -m collector.run); this page redraws as they complete.";
        if (mine === generation) await chart(el, c.id, spec, rows, empty);
      } catch (err) {
        if (mine === generation) fail(el, err);
      }
    })
  );
  if (mine === generation) Object.assign(document.body.dataset, { ready: "1", drawn: String(mine) });
}

const POLL_MS = 5000; // the figures follow the runs as collectors finish them
let runs = await apiAll("/v1/runs", { limit: 1000 });
const signature = (rs) => JSON.stringify(rs.filter((r) => r.status === "complete").map((r) => [r.run_id, r.tokens]));
await fillExperiments();
fillFilters(runs);
document.getElementById("filters").addEventListener("change", (event) => {
  if (event.target.name === "experiment") fillFilters(runs);
  drawAll(runs);
});
await drawAll(runs);

// Faceted charts are drawn for their card's width: a new window width (a turned phone) draws them again.
let drawnWidth = grid.clientWidth;
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (Math.abs(grid.clientWidth - drawnWidth) < 40) return;
    drawnWidth = grid.clientWidth;
    drawAll(runs);
  }, 250);
});

async function poll() {
  try {
    const fresh = await apiAll("/v1/runs", { limit: 1000 });
    if (signature(fresh) !== signature(runs)) {
      runs = fresh;
      await fillExperiments();
      fillFilters(runs);
      await drawAll(runs);
    }
  } catch (err) {
    console.warn(err);
  }
  setTimeout(poll, POLL_MS);
}
setTimeout(poll, POLL_MS);
