// The token view of one sample: prompt, then the output token by token, marked by who wrote each.
import { api, escapeHtml, fmt, frame } from "./common.js";
import { LABELS, renderTokens, writer } from "./tokens.js";

const [, , runId, , sampleId] = location.pathname.split("/");
const main = frame("Runs", `Run ${runId} · sample ${sampleId}`);
main.innerHTML = `<p><a href="/runs/${runId}">← run ${runId}</a></p>
  <h1>Run ${runId} · sample ${sampleId}</h1>
  <div class="stats" id="stats"></div>
  <h2>Prompt</h2><pre class="prompt" id="prompt" aria-label="prompt"></pre>
  <section id="reference-box" hidden><h2>Reference answer</h2>
    <pre class="answer" id="reference" aria-label="reference answer"></pre></section>
  <h2 id="output-title">Output, token by token</h2>
  <div class="legend" id="legend"></div>
  <div class="tokens" id="tokens" tabindex="0" aria-labelledby="output-title"
    aria-describedby="tokens-help"></div>
  <p class="muted" id="tokens-help">Hover a token, or focus the text and use ← → (Home, End, Esc) to see
    System 1's and the LLM's top choice and probability.</p>
  <div id="tip" role="status" aria-hidden="true"></div>`;

/** A token event from the API; where the run's tokenizer is not on the server, ids stand in for text. */
function normalise(t) {
  return {
    ...t,
    text: t.text ?? `#${t.token_id}`,
    s1_text: t.s1_text ?? `#${t.s1_token_id}`,
    llm_text: t.llm_text ?? `#${t.llm_token_id}`,
  };
}

function legend(speculative, tokens) {
  const kinds = speculative ? ["acc", "rej", "bonus"] : ["s1", "s2"];
  const counts = Object.fromEntries(kinds.map((k) => [k, 0]));
  for (const t of tokens) counts[writer(t, speculative)]++;
  return (
    kinds.map((k) => `<span><span class="tok ${k} swatch">abc</span> ${escapeHtml(LABELS[k])} (${counts[k]})</span>`).join("") +
    `<span>System 1 entropy: <span class="ramp" aria-hidden="true"></span> low → high</span>`
  );
}

async function load() {
  const [run, sample] = await Promise.all([api(`/v1/runs/${runId}`), api(`/v1/runs/${runId}/samples/${sampleId}`)]);
  const speculative = run.method === "speculative";
  const tokens = sample.tokens.map(normalise);
  document.getElementById("stats").innerHTML = [
    ["pair", `${run.llm} / ${run.slm}`],
    ["method", run.method],
    ["tokens", sample.truncated ? `${tokens.length} of ${sample.n_tokens} (cut)` : tokens.length],
    ["mismatches", sample.mismatches],
    ["CoF", fmt(sample.cof)],
    ["stop", sample.stop_reason],
    ["correct", sample.correct === null || sample.correct === undefined ? "–" : sample.correct ? "yes" : "no"],
  ]
    .map(([k, v]) => `<div class="stat"><span class="muted">${k}</span><b>${escapeHtml(v)}</b></div>`)
    .join("");
  document.getElementById("prompt").textContent = sample.prompt ?? "";
  if (sample.reference !== null && sample.reference !== undefined && sample.reference !== "") {
    document.getElementById("reference").textContent = sample.reference;
    document.getElementById("reference-box").hidden = false;
  }
  document.getElementById("legend").innerHTML = legend(speculative, tokens);
  const ms = renderTokens(document.getElementById("tokens"), document.getElementById("tip"), tokens, speculative);
  document.body.dataset.ready = "1";
  return ms;
}

load().catch((err) => {
  main.insertAdjacentHTML("beforeend", `<p class="error" role="alert">${escapeHtml(err.message)}</p>`);
  console.warn(err);
});
