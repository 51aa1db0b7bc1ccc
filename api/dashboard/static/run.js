// One run: its settings, accuracy and CoF, its position and entropy profiles, and its samples.
import { api, apiAll, apiKnown, card, chart, config, escapeHtml, fail, fmt, frame, plain, servedRoutes, statusBadge } from "./common.js";
import { RUN_CHARTS } from "./charts.js";

const runId = Number(location.pathname.split("/")[2]);
const main = frame("Runs", `Run ${runId}`);
main.innerHTML = `<p><a href="/runs">← all runs</a></p><h1>Run ${runId}</h1>
  <div class="stats" id="stats"></div>
  <div class="grid" id="run-grid">
    <section class="card" id="settings" aria-labelledby="settings-title">
      <header><h2 id="settings-title">Settings</h2></header><dl class="settings"></dl></section>
  </div>
  <section class="card wide" id="samples" aria-labelledby="samples-title" style="margin-top:1rem">
    <header><h2 id="samples-title">Samples</h2></header>
    <div class="table-wrap"><table><thead><tr><th scope="col" class="num">sample</th><th scope="col" class="num">tokens</th>
      <th scope="col" class="num">CoF</th><th scope="col">correct</th><th scope="col">stop</th><th scope="col">output</th></tr></thead>
      <tbody></tbody></table></div></section>`;

const SETTINGS = ["llm", "slm", "slm_tuned", "method", "router", "threshold", "dataset", "n_samples", "seed",
  "temperature", "top_p", "device", "dtype", "created_at", "finished_at", "wall_s", "tokens_per_s"];

/** Whether a setting is shown for the run: another method's own setting (λ for a speculative run) is not. */
function applies(name, run, methodParams) {
  const own = methodParams[run.method] ?? [];
  return own.includes(name) || !Object.values(methodParams).some((ps) => ps.includes(name));
}

function showRun(run, methodParams) {
  document.getElementById("stats").innerHTML = [
    ["status", statusBadge(run.status)],
    ["tokens", escapeHtml(fmt(run.tokens, 0))],
    ["CoF", fmt(run.cof)],
    ["consult rate", fmt(run.consult_rate)],
    ["accuracy", fmt(run.accuracy)],
  ]
    .map(([k, v]) => `<div class="stat"><span class="muted">${k}</span><b>${v}</b></div>`)
    .join("");
  const extra = run.settings && typeof run.settings === "object" ? Object.entries(run.settings) : [];
  const entries = [...SETTINGS.filter((k) => k in run).map((k) => [k, run[k]]), ...extra.filter(([k]) => !SETTINGS.includes(k))]
    .filter(([k]) => applies(k, run, methodParams));
  document.querySelector("#settings dl").innerHTML = entries
    .map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(plain(v))}</dd>`)
    .join("");
}

function sampleRow(s) {
  const tokens = s.n_tokens ?? s.tokens;
  const cof = s.cof ?? (s.mismatches !== undefined && tokens ? s.mismatches / tokens : null);
  const correct = s.correct === null || s.correct === undefined ? "–" : s.correct ? "yes" : "no";
  const out = String(s.output ?? "").slice(0, 80);
  return `<tr><td class="num"><a href="/runs/${runId}/samples/${s.sample_id}">${s.sample_id}</a></td>
    <td class="num">${fmt(tokens, 0)}</td><td class="num">${fmt(cof)}</td><td>${correct}</td>
    <td>${escapeHtml(s.stop_reason)}</td><td class="muted">${escapeHtml(JSON.stringify(out))}</td></tr>`;
}

async function charts(run) {
  const routes = await servedRoutes();
  const grid = document.getElementById("run-grid");
  await Promise.all(
    RUN_CHARTS.filter((c) => c.applies(run)).map(async (c) => {
      const el = card(grid, c);
      const missing = c.routes.filter((p) => !routes.has(p));
      if (missing.length) return fail(el, `this server does not serve ${missing.join(", ")}`);
      try {
        const note = el.querySelector(".note");
        const detail = el.querySelector(".detail");
        const { rows, spec } = await c.load({
          run,
          api: apiKnown,
          note: (text) => (note.textContent = [c.note, text].filter(Boolean).join(" ")),
          detail: (html) => (detail.innerHTML = html),
        });
        await chart(el, `run${runId}-${c.id}`, spec, rows);
      } catch (err) {
        fail(el, err);
      }
    })
  );
}

async function load() {
  const [run, { method_params: methodParams }] = await Promise.all([api(`/v1/runs/${runId}`), config()]);
  showRun(run, methodParams ?? {});
  const routes = await servedRoutes();
  const body = document.querySelector("#samples tbody");
  if (routes.has("/v1/runs/{run_id}/samples")) {
    const samples = await apiAll(`/v1/runs/${runId}/samples`, { limit: 200 }, 200);
    body.innerHTML = samples.map(sampleRow).join("");
  } else {
    body.innerHTML = `<tr><td colspan="6" class="error">this server does not serve /v1/runs/{run_id}/samples</td></tr>`;
  }
  await charts(run);
  document.body.dataset.ready = "1";
}

load().catch((err) => {
  main.insertAdjacentHTML("beforeend", `<p class="error" role="alert">${escapeHtml(err.message)}</p>`);
  console.warn(err);
});
