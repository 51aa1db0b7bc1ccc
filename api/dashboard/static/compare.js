// Two runs side by side (/v1/compare): what they are, the settings that differ, each figure with the
// interval of B − A, and the samples whose tokens first differ, each linking to both token views.
import { api, escapeHtml, fail, fmt, frame, plain } from "./common.js";

const params = new URLSearchParams(location.search);
const main = frame("Compare", "Compare runs");
main.innerHTML = `<h1>Compare two runs</h1>
  <form class="filters" id="pick" aria-label="runs to compare">
    <label>run A <input name="a" type="number" min="0" required value="${escapeHtml(params.get("a") ?? "")}" style="width:6rem"></label>
    <label>run B <input name="b" type="number" min="0" required value="${escapeHtml(params.get("b") ?? "")}" style="width:6rem"></label>
    <button type="submit">compare</button> <span class="muted" id="pairing"></span>
  </form>
  <section class="card wide" id="compare" aria-labelledby="compare-title">
    <header><h2 id="compare-title">Runs</h2></header><div class="table-wrap" id="runs"></div>
    <h2>Figures (${"B − A"}, with its interval)</h2><div class="table-wrap" id="metrics"></div>
    <h2>Settings that differ</h2><div class="table-wrap" id="settings"></div>
    <h2>Samples whose tokens differ</h2><div class="table-wrap" id="differences"></div>
  </section>`;

function table(cols, rows) {
  const head = cols.map(([, label, num]) => `<th scope="col"${num ? ' class="num"' : ""}>${escapeHtml(label)}</th>`).join("");
  const body = rows
    .map((r) => `<tr>${cols.map(([k, , num, html]) => `<td${num ? ' class="num"' : ""}>${html ? r[k] : escapeHtml(num ? fmt(r[k], num === "int" ? 0 : 3) : plain(r[k]))}</td>`).join("")}</tr>`)
    .join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

async function load(a, b) {
  const c = await api("/v1/compare", { a, b });
  const el = (id) => document.getElementById(id);
  el("pairing").textContent = c.paired
    ? `${c.paired} samples paired by prompt; ${Math.round(c.confidence * 100)}% intervals`
    : `no shared prompts: independent samples; ${Math.round(c.confidence * 100)}% intervals`;
  const runs = c.runs.map((r, i) => ({ ...r, which: ["A", "B"][i], link: `<a href="/runs/${r.run_id}">${r.run_id}</a>` }));
  el("runs").innerHTML = table(
    [["which", ""], ["link", "run", false, true], ["experiment", "experiment"], ["llm", "LLM"], ["slm", "SLM"],
     ["method", "method"], ["router", "router"], ["dataset", "dataset"], ["status", "status"]],
    runs
  );
  const metrics = c.metrics.map((m) => ({ ...m, ci: m.ci_lo === null ? "–" : `[${fmt(m.ci_lo)}, ${fmt(m.ci_hi)}]` }));
  el("metrics").innerHTML = table(
    [["metric", "figure"], ["a", "A", true], ["b", "B", true], ["difference", "B − A", true], ["ci", "interval"],
     ["samples", "samples", "int"], ["interval", "how"]],
    metrics
  );
  const settings = Object.entries(c.settings).map(([k, v]) => ({ name: k, a: v.a, b: v.b }));
  el("settings").innerHTML = settings.length ? table([["name", "setting"], ["a", "A"], ["b", "B"]], settings) : `<p class="muted">none</p>`;
  const diffs = c.first_differences.map((d) => ({
    ...d,
    views: `<a href="${d.links[0]}">A: sample ${d.sample_a}</a> · <a href="${d.links[1]}">B: sample ${d.sample_b}</a>`,
  }));
  el("differences").innerHTML = diffs.length
    ? table([["step", "first differing step", "int"], ["token_a", "A's token id"], ["token_b", "B's token id"], ["views", "token views", false, true]], diffs)
    : `<p class="muted">${c.paired ? "every paired sample has the same tokens" : "the runs share no prompt"}</p>`;
}

document.getElementById("pick").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  location.search = `?a=${form.elements.a.value}&b=${form.elements.b.value}`;
});

if (params.get("a") && params.get("b")) {
  try {
    await load(params.get("a"), params.get("b"));
  } catch (err) {
    fail(document.getElementById("compare"), err);
  }
}
document.body.dataset.ready = "1";
