// Overview: the paper's figures over the warehouse's runs, with filters; each chart's numbers download.
import { apiAll, apiKnown, card, chart, escapeHtml, fail, frame, servedRoutes } from "./common.js";
import { CHARTS } from "./charts.js";

const main = frame("Overview", "Overview");
main.innerHTML = `<h1>Collaboration overview</h1>
  <form class="filters" id="filters" aria-label="filters">
    <label>method <select name="method"><option value="">all</option></select></label>
    <label>dataset <select name="dataset"><option value="">all</option></select></label>
    <label>router <select name="router"><option value="">all</option></select></label>
    <span class="muted" id="filter-note"></span>
  </form>
  <div class="grid" id="charts"></div>`;

const grid = document.getElementById("charts");
const cards = new Map(CHARTS.map((c) => [c.id, card(grid, c)]));

/** Fill each filter's options with the values the runs have. */
function fillFilters(runs) {
  const form = document.getElementById("filters");
  for (const name of ["method", "dataset", "router"]) {
    const select = form.elements[name];
    const values = [...new Set(runs.map((r) => r[name]))].sort();
    select.innerHTML = `<option value="">all</option>` + values.map((v) => `<option>${escapeHtml(v)}</option>`).join("");
  }
}

function filters() {
  const form = document.getElementById("filters");
  return Object.fromEntries(["method", "dataset", "router"].map((n) => [n, form.elements[n].value || null]));
}

/** Draw every chart for the current filters; a chart whose route this server lacks says so. */
async function drawAll(runs) {
  const f = filters();
  const paths = await servedRoutes();
  const selected = runs.filter(
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
        note.textContent = c.note;
        const { rows, spec } = await c.load({ ...base, note: (text) => (note.textContent = [c.note, text].filter(Boolean).join(" ")) });
        await chart(el, c.id, spec, rows);
      } catch (err) {
        fail(el, err);
      }
    })
  );
  document.body.dataset.ready = "1";
}

const runs = await apiAll("/v1/runs", { limit: 1000 });
fillFilters(runs);
document.getElementById("filters").addEventListener("change", () => {
  document.body.dataset.ready = "";
  drawAll(runs);
});
await drawAll(runs);
