// The runs list: every run with its status, refreshed every POLL_MS while the page is open.
import { apiAll, escapeHtml, fmt, frame, pairLabel, statusBadge } from "./common.js";

const POLL_MS = 1500;
const main = frame("Runs", "Runs");
main.innerHTML = `<h1>Runs</h1>
  <p class="muted" id="runs-note">Loading…</p>
  <div class="table-wrap"><table id="runs-table">
    <caption class="muted" style="text-align:left">Updates by itself while collectors stage batches.</caption>
    <thead><tr><th scope="col" class="num">run</th><th scope="col">experiment</th><th scope="col">LLM / SLM</th><th scope="col">method</th>
      <th scope="col">router</th><th scope="col">dataset</th><th scope="col">status</th>
      <th scope="col" class="num">samples</th><th scope="col" class="num">tokens</th>
      <th scope="col" class="num">CoF</th><th scope="col" class="num">consult rate</th>
      <th scope="col" class="num">accuracy</th><th scope="col">created</th><th scope="col">tags</th></tr></thead>
    <tbody></tbody></table></div>`;

function row(r) {
  const router = r.threshold === null || r.threshold === undefined ? r.router : `${r.router} ${fmt(r.threshold, 2)}`;
  return `<tr data-run="${r.run_id}" data-status="${escapeHtml(r.status)}">
    <td class="num"><a href="/runs/${r.run_id}">${r.run_id}</a></td><td>${escapeHtml(r.experiment ?? "")}</td>
    <td>${escapeHtml(pairLabel(r.llm, r.slm))}</td><td>${escapeHtml(r.method)}</td>
    <td>${escapeHtml(router)}</td><td>${escapeHtml(r.dataset)}</td><td>${statusBadge(r.status)}</td>
    <td class="num">${fmt(r.n_samples, 0)}</td><td class="num">${fmt(r.tokens, 0)}</td>
    <td class="num">${fmt(r.cof)}</td><td class="num">${fmt(r.consult_rate)}</td>
    <td class="num">${fmt(r.accuracy)}</td>
    <td>${escapeHtml(String(r.created_at).replace("T", " ").slice(0, 19))}</td>
    <td>${[...(r.excluded ? ["excluded"] : []), ...(r.tags ?? [])].map((t) => `<span class="tag">${escapeHtml(t)}</span>`).join(" ")}</td></tr>`;
}

let last = "";
async function refresh() {
  const note = document.getElementById("runs-note");
  try {
    const runs = await apiAll("/v1/runs", { limit: 1000 });
    const html = runs.map(row).join("");
    if (html !== last) {
      document.querySelector("#runs-table tbody").innerHTML = html;
      last = html;
    }
    const running = runs.filter((r) => r.status === "running").length;
    note.textContent = `${runs.length} run${runs.length === 1 ? "" : "s"}${running ? `, ${running} running` : ""}; refreshed ${new Date().toLocaleTimeString()}.`;
    note.classList.remove("error");
    document.body.dataset.ready = "1";
  } catch (err) {
    note.textContent = `Could not refresh: ${err.message}`;
    note.classList.add("error");
  }
}

async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}

poll();
