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
    const keep = select.value;
    const values = [...new Set(runs.map((r) => r[name]))].sort();
    select.innerHTML = `<option value="">all</option>` + values.map((v) => `<option>${escapeHtml(v)}</option>`).join("");
    select.value = values.includes(keep) ? keep : "";
  }
}

function filters() {
  const form = document.getElementById("filters");
  return Object.fromEntries(["method", "dataset", "router"].map((n) => [n, form.elements[n].value || null]));
}

let generation = 0;

/** Draw every chart for the current filters; a chart whose route this server lacks says so. */
async function drawAll(runs) {
  const mine = ++generation; // a newer draw (filter change, new runs) wins over this one
  document.body.dataset.ready = "";
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
        const empty = runs.length ? undefined : "No runs yet: collect some (python -m collector.run); this page redraws as they complete.";
        if (mine === generation) await chart(el, c.id, spec, rows, empty);
      } catch (err) {
        if (mine === generation) fail(el, err);
      }
    })
  );
  if (mine === generation) document.body.dataset.ready = "1";
}

const POLL_MS = 5000; // the figures follow the runs as collectors finish them
let runs = await apiAll("/v1/runs", { limit: 1000 });
const signature = (rs) => JSON.stringify(rs.filter((r) => r.status === "complete").map((r) => [r.run_id, r.tokens]));
fillFilters(runs);
document.getElementById("filters").addEventListener("change", () => drawAll(runs));
await drawAll(runs);

async function poll() {
  try {
    const fresh = await apiAll("/v1/runs", { limit: 1000 });
    if (signature(fresh) !== signature(runs)) {
      runs = fresh;
      fillFilters(runs);
      await drawAll(runs);
    }
  } catch (err) {
    console.warn(err);
  }
  setTimeout(poll, POLL_MS);
}
setTimeout(poll, POLL_MS);
