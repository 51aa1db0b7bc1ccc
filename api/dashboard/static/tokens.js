// The token view: each generated token as a span, marked by who wrote it and shaded by System 1's
// entropy; one shared tooltip (hover, or the arrow keys on the focused text) shows both models' top choice.
import { escapeHtml, fmt } from "./common.js";

/** Who wrote a token: System 1 kept / System 2 changed, or for speculative runs accepted / rejected / bonus. */
export function writer(t, speculative) {
  if (!speculative) return t.mismatch ? "s2" : "s1";
  if (t.accepted) return "acc";
  return t.mismatch ? "rej" : "bonus";
}

export const LABELS = {
  s1: "System 1 kept (its own top choice)",
  s2: "System 2 changed it",
  acc: "drafted by System 1, accepted",
  rej: "draft rejected, the LLM's token",
  bonus: "the LLM's token after accepted drafts",
};

/** Visible text of a token: whitespace stays, an empty token shows as ∅. */
function shown(text) {
  return text === "" ? "∅" : text;
}

/** The HTML of every token (one string: a 2,000-token sample renders in one layout pass). */
export function tokensHtml(tokens, speculative, maxEntropy) {
  const scale = maxEntropy > 0 ? 0.85 / maxEntropy : 0;
  const parts = new Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    const who = writer(t, speculative);
    const e = Math.min(0.85, (t.s1_entropy ?? 0) * scale).toFixed(2);
    parts[i] = `<span class="tok ${who}" data-i="${i}" style="--e:${e}">${escapeHtml(shown(t.text))}</span>`;
  }
  return parts.join("");
}

function tipHtml(t, speculative) {
  const who = LABELS[writer(t, speculative)];
  const q = (s) => escapeHtml(JSON.stringify(s ?? ""));
  const draft = speculative && t.draft_index !== null && t.draft_index !== undefined ? `, draft position ${t.draft_index}` : "";
  return `<div><b>step ${t.step}</b>: ${escapeHtml(who)}${draft}</div>
    <table><tr><th></th><th>top token</th><th>prob</th></tr>
    <tr><td>System 1</td><td>${q(t.s1_text)}</td><td>${fmt(t.s1_prob)}</td></tr>
    <tr><td>LLM</td><td>${q(t.llm_text)}</td><td>${fmt(t.llm_prob)}</td></tr></table>
    <div>emitted ${q(t.text)} · S1 entropy ${fmt(t.s1_entropy, 2)} nats · ${t.consulted ? "consulted" : "not consulted"}</div>`;
}

/** Render `tokens` into `box` and wire the tooltip; returns the time it took (ms). */
export function renderTokens(box, tip, tokens, speculative) {
  const start = performance.now();
  const maxEntropy = tokens.reduce((m, t) => Math.max(m, t.s1_entropy ?? 0), 0);
  box.innerHTML = tokensHtml(tokens, speculative, maxEntropy);
  let current = -1;
  const spans = box.children;
  const show = (i, anchor) => {
    if (current >= 0 && spans[current]) spans[current].classList.remove("cur");
    current = i;
    const span = spans[i];
    span.classList.add("cur");
    tip.innerHTML = tipHtml(tokens[i], speculative);
    tip.style.display = "block";
    const r = (anchor ?? span).getBoundingClientRect();
    const left = Math.max(4, Math.min(r.left, window.innerWidth - tip.offsetWidth - 4));
    const below = r.bottom + 6 + tip.offsetHeight < window.innerHeight;
    tip.style.left = `${left}px`;
    tip.style.top = `${below ? r.bottom + 6 : Math.max(4, r.top - tip.offsetHeight - 6)}px`;
    tip.setAttribute("aria-hidden", "false");
  };
  const hide = () => {
    tip.style.display = "none";
    tip.setAttribute("aria-hidden", "true");
  };
  box.onmouseover = (ev) => {
    const i = ev.target?.dataset?.i;
    if (i !== undefined) show(Number(i));
  };
  box.onmouseleave = hide;
  box.onkeydown = (ev) => {
    const step = { ArrowRight: 1, ArrowLeft: -1, Home: -Infinity, End: Infinity }[ev.key];
    if (ev.key === "Escape") return hide();
    if (step === undefined || !tokens.length) return;
    ev.preventDefault();
    const next = Math.max(0, Math.min(tokens.length - 1, (current < 0 ? (step > 0 ? -1 : tokens.length) : current) + step));
    show(next);
    spans[next].scrollIntoView({ block: "nearest" });
  };
  box.onblur = hide;
  void box.offsetHeight; // force layout, so the time includes it
  const elapsed = performance.now() - start;
  box.dataset.renderMs = elapsed.toFixed(1);
  return elapsed;
}
