// The charts: each names the /v1 routes it reads and turns their answers into rows (the numbers its
// CSV / JSON buttons download) and a Vega-Lite spec over those rows. No analysis happens here: every
// number comes from the API (which calls `analytics`); the charts only lay them out.
import { pairLabel, shortModel } from "./common.js";

const BUDGET = 0.2; // consult budget marked on the router curves
const BAND_POINTS = 9; // ratios at which the scaling law's interval is asked for
const MAX_BANDS = 6;

/** Rows of a grouped /v1 answer, with the group's columns lifted to the top level. */
export function flat(rows) {
  return rows.map(({ group, ...rest }) => ({ ...(group ?? {}), ...rest }));
}

function withPair(rows) {
  return rows.map((r) => ({ pair: pairLabel(r.llm, r.slm), ...r }));
}

/** The filters every aggregate route takes, restricted to complete runs. */
function runFilters(f) {
  return { method: f.method, dataset: f.dataset, router: f.router, experiment: f.experiment, status: "complete" };
}

const q = (field, title, extra = {}) => ({ field, type: "quantitative", title, ...extra });
const n = (field, title, extra = {}) => ({ field, type: "nominal", title, ...extra });

const cof = {
  id: "cof",
  title: "CoF by pair and method",
  note: "Mismatches / generated tokens of complete runs: bars the pooled CoF, whiskers its 95% interval (ratio estimator, delta method over samples). The per-sample mean with its t interval and the design effect are in the CSV / JSON.",
  routes: ["/v1/cof"],
  async load(ctx) {
    // By identity: runs that differ in a setting that defines a run (τ, K, λ, ...) are separate bars.
    const body = await ctx.api("/v1/cof", { group_by: ["llm", "slm", "method", "identity"], ...runFilters(ctx.filters) });
    const rows = withPair(flat(body.data)).map((r) => ({ ...r, pair: r.settings ? `${r.pair} ${r.settings}` : r.pair }));
    const spec = {
      height: 240,
      data: { values: rows },
      encoding: {
        x: n("pair", "LLM / SLM", { sort: null }),
        xOffset: n("method"),
        color: n("method", "method"),
      },
      layer: [
        { mark: { type: "bar", tooltip: true }, encoding: { y: q("cof", "CoF") } },
        { mark: { type: "rule", strokeWidth: 1.5 }, encoding: { y: q("cof_lo"), y2: { field: "cof_hi" }, color: { value: "#1d2433" } } },
      ],
    };
    return { rows, spec };
  },
};

/** Pair points of the scaling law (pooled CoF with both sizes and R), and each fit's law with its band. */
function scalingData(ctx) {
  return ctx.memo("scaling", () => fetchScaling(ctx));
}

async function fetchScaling(ctx) {
  const { method, dataset, router, experiment } = ctx.filters;
  const body = await ctx.api("/v1/scaling", { method, dataset, router: router ?? "always", experiment });
  const points = withPair(body.points).filter((p) => p.cof !== null);
  const fitted = body.fits.filter((g) => g.fit).slice(0, MAX_BANDS);
  const curves = [];
  for (const g of fitted) {
    const ratios = points.filter((p) => p.method === g.method && p.dataset === g.dataset).map((p) => p.param_ratio);
    // Over the pairs' range only: a law says nothing about ratios no pair has.
    const lo = Math.min(...ratios);
    const hi = Math.max(...ratios);
    const grid = Array.from({ length: BAND_POINTS }, (_, i) => lo * (hi / lo) ** (i / (BAND_POINTS - 1)));
    const preds = await Promise.all(
      grid.map((ratio) =>
        ctx.api("/v1/scaling/predict", { method: g.method, dataset: g.dataset, router: router ?? "always", ratio, bootstrap: 100, experiment, law: "paper" })
      )
    );
    for (const p of preds) curves.push({ method: p.method, dataset: p.dataset, param_ratio: p.ratio, law: p.value, lo: p.lo, hi: p.hi });
  }
  return { points, curves, fits: body.fits };
}

function sizeChart(id, field, title) {
  return {
    id,
    title,
    note: "Pooled CoF of each (LLM, SLM) pair and method (runs with router always), against counted parameters.",
    routes: ["/v1/scaling"],
    async load(ctx) {
      const { points } = await scalingData(ctx);
      const spec = {
        height: 220,
        data: { values: points },
        mark: { type: "point", filled: false, strokeWidth: 2, size: 80, tooltip: true },
        encoding: {
          x: q(field, `${title.replace("CoF vs ", "")} (parameters)`, { scale: { type: "log", nice: false, padding: 24 }, axis: { format: "~s", labelOverlap: "greedy", tickCount: 4 } }),
          y: q("cof", "CoF", { scale: { zero: false } }),
          color: n("method", "method"),
          shape: n("method", "method"), // oracle and greedy speculative coincide: shapes keep both visible
          detail: n("dataset"),
        },
      };
      return { rows: points, spec };
    },
  };
}

const ratio = {
  id: "scaling-ratio",
  title: "CoF vs parameter ratio R, with the fitted law",
  note: "Points: pairs. Line: the paper's CoF = γ·R^(−α) + β fitted per method and dataset, drawn over the pairs' range of R only (where α is unidentified it is its log-linear limit, not a finding); band: its 95% bootstrap interval (from /v1/scaling/predict). Below: the law the pairs support.",
  routes: ["/v1/scaling", "/v1/scaling/predict"],
  async load(ctx) {
    const { points, curves, fits } = await scalingData(ctx);
    const rows = [...points.map((p) => ({ kind: "pair", ...p })), ...curves.map((c) => ({ kind: "law", ...c }))];
    const top = Math.min(1, 1.3 * Math.max(...points.map((p) => p.cof), ...curves.map((c) => c.law ?? 0)));
    const y = (field) => q(field, "CoF", { scale: { domain: [0, top] } });
    const x = q("param_ratio", "R = N_LLM / N_SLM", { scale: { type: "log", nice: false, padding: 24 }, axis: { labelOverlap: "greedy", tickCount: 6 } });
    const spec = {
      height: 240,
      layer: [
        { data: { values: curves }, mark: { type: "area", opacity: 0.18, clip: true }, encoding: { x, y: y("lo"), y2: { field: "hi" }, color: n("method", "method") } },
        { data: { values: curves }, mark: { type: "line", strokeWidth: 2, clip: true }, encoding: { x, y: y("law"), color: n("method", "method"), detail: n("dataset") } },
        { data: { values: points }, mark: { type: "point", filled: false, strokeWidth: 2, size: 80, tooltip: true }, encoding: { x, y: y("cof"), color: n("method", "method"), shape: n("method", "method", { legend: null }), detail: n("dataset") } },
      ],
    };
    ctx.note?.(fits.map(lawNote).join("; "));
    return { rows, spec };
  },
};

/** One group's fit in words: the law the pairs support (fit_cof), and the paper's law only where identified. */
function lawNote(g) {
  const chosen = g.laws?.candidates?.[0];
  const coef = chosen ? (chosen.names ?? []).map((k, i) => `${k}=${Number(chosen.params?.[i]).toPrecision(3)}`).join(" ") : "";
  const law = chosen ? `supported law ${chosen.form} ${chosen.formula}, ${coef} (LOO RMSE ${chosen.loo_rmse == null ? "–" : Number(chosen.loo_rmse).toFixed(3)})` : g.laws_note || "no law";
  const paper = g.fit && g.note === "ok" ? `; paper's law γ=${g.fit.gamma.toFixed(3)} α=${g.fit.alpha.toFixed(3)} β=${g.fit.beta.toFixed(3)}` : "; paper's law: no finding";
  return `${g.method} · ${g.dataset}: ${law}${paper}`;
}

function positionSpec(rows, colorField, colorTitle) {
  return {
    height: 220,
    data: { values: rows },
    layer: [
      {
        mark: { type: "line", point: true, tooltip: true },
        encoding: { x: q("bin", "position decile (0 = first 10% of the output)", { scale: { domain: [0, 9] }, axis: { tickMinStep: 1, format: "d" } }), y: q("mismatch_share", "share of mismatches"), color: n(colorField, colorTitle) },
      },
      { mark: { type: "line", strokeDash: [4, 3], color: "#888" }, encoding: { x: q("bin"), y: q("token_share"), detail: n(colorField) } },
    ],
  };
}

const positions = {
  id: "positions",
  title: "Where interventions fall, per pair",
  note: "Share of each pair's mismatches in each decile of the output; dashed: its share of tokens (no clustering).",
  routes: ["/v1/positions"],
  async load(ctx) {
    const body = await ctx.api("/v1/positions", { group_by: ["llm", "slm"], ...runFilters(ctx.filters) });
    const rows = withPair(flat(body.deciles));
    return { rows, spec: positionSpec(rows, "pair", "LLM / SLM") };
  },
};

const auroc = {
  id: "auroc",
  title: "Uncertainty as a mismatch predictor (AUROC)",
  note: "AUROC of each predictor per pair: 0.5 is chance, 1 a perfect predictor (each predictor grows as System 1 grows less certain).",
  routes: ["/v1/uncertainty"],
  async load(ctx) {
    const body = await ctx.api("/v1/uncertainty", { group_by: ["llm", "slm"], ...runFilters(ctx.filters) });
    const rows = withPair(flat(body.predictors));
    const spec = {
      height: 220,
      data: { values: rows },
      mark: { type: "bar", tooltip: true },
      encoding: { x: n("pair", "LLM / SLM", { sort: null }), xOffset: n("predictor"), y: q("auroc", "AUROC", { scale: { domain: [0, 1] } }), color: n("predictor", "predictor") },
    };
    return { rows, spec };
  },
};

/** Matched / mismatched token distributions over System 1 entropy bins (from the bins' counts). */
function entropyRows(bins) {
  const matchedTotal = bins.reduce((s, b) => s + (b.tokens - b.mismatches), 0);
  const mismatchTotal = bins.reduce((s, b) => s + b.mismatches, 0);
  const range = (b) => (b.hi === null || b.hi === undefined ? `≥${b.lo}` : `${b.lo}–${b.hi}`);
  return bins.flatMap((b) => [
    { bin: b.bin, lo: b.lo, hi: b.hi, range: range(b), kind: "matched", tokens: b.tokens - b.mismatches, share: matchedTotal ? (b.tokens - b.mismatches) / matchedTotal : 0 },
    { bin: b.bin, lo: b.lo, hi: b.hi, range: range(b), kind: "mismatched", tokens: b.mismatches, share: mismatchTotal ? b.mismatches / mismatchTotal : 0 },
  ]);
}

function entropySpec(rows) {
  return {
    height: 220,
    data: { values: rows },
    mark: { type: "bar", tooltip: true, opacity: 0.85 },
    encoding: {
      x: { field: "range", type: "ordinal", title: "System 1 entropy (nats)", sort: { field: "bin" }, axis: { labelAngle: -40 } },
      y: q("share", "share of tokens"),
      color: n("kind", "token", { scale: { domain: ["matched", "mismatched"], range: ["#3a7d44", "#c0392b"] } }),
      xOffset: n("kind"),
    },
  };
}

const entropy = {
  id: "entropy",
  title: "System 1 entropy of matched and mismatched tokens",
  note: "Distribution over entropy bins of the tokens System 1 got right (matched) and those System 2 changed.",
  routes: ["/v1/uncertainty"],
  async load(ctx) {
    // One pooled group over the selected runs (grouping by status, which the filter fixes to complete).
    const body = await ctx.api("/v1/uncertainty", { group_by: ["status"], predictor: ["entropy"], ...runFilters(ctx.filters) });
    const rows = entropyRows(body.entropy_bins);
    return { rows, spec: entropySpec(rows) };
  },
};

function paretoSpec(rows) {
  return {
    height: 240,
    data: { values: rows },
    layer: [
      {
        mark: { type: "line", point: { size: 18 }, tooltip: true, interpolate: "step-after" },
        encoding: { x: q("consult_rate", "consult rate (share of tokens to System 2)", { scale: { domain: [0, 1] }, axis: { tickCount: 5 } }), y: q("caught", "share of mismatches caught", { scale: { domain: [0, 1] } }), color: n("router", "router"), order: q("consult_rate") },
      },
      { data: { values: [{}] }, mark: { type: "rule", strokeDash: [4, 3], color: "#888" }, encoding: { x: { datum: BUDGET } } },
    ],
  };
}

/** The run whose routers are replayed: the selection's first `always` run with the most tokens. */
function replayRun(runs) {
  const always = runs.filter((r) => r.router === "always" && r.method !== "speculative");
  return [...(always.length ? always : runs)].sort((a, b) => b.tokens - a.tokens || a.run_id - b.run_id)[0];
}

const pareto = {
  id: "pareto",
  title: "Router replay: consult rate vs mismatches caught",
  note: "",
  routes: ["/v1/routers/replay"],
  async load(ctx) {
    const run = replayRun(ctx.runs);
    if (!run) return { rows: [], spec: {} };
    ctx.note?.(`Run ${run.run_id} (${pairLabel(run.llm, run.slm)}, ${run.method}) replayed offline at token-quantile thresholds; dashed: a ${BUDGET} consult budget.`);
    const body = await ctx.api("/v1/routers/replay", { run_id: run.run_id });
    const rows = body.data.map((r) => ({ run_id: run.run_id, ...r }));
    return { rows, spec: paretoSpec(rows) };
  },
};

function acceptanceSpec(rows, colorField) {
  return {
    height: 220,
    data: { values: rows },
    mark: { type: "line", point: true, tooltip: true },
    encoding: {
      x: q("position", "position in the draft (0 = first drafted token)", { axis: { tickMinStep: 1, format: "d" } }),
      y: q("acceptance_rate", "P(accepted | reached)", { scale: { domain: [0, 1] } }),
      color: n(colorField, "run", { scale: { scheme: "category20" } }), // more than ten runs: twenty colours
    },
  };
}

const speculative = {
  id: "speculative",
  title: "Speculative decoding: acceptance by draft position",
  note: "",
  routes: ["/v1/speculative"],
  async load(ctx) {
    const { dataset, router, experiment } = ctx.filters;
    if (ctx.filters.method && ctx.filters.method !== "speculative") return { rows: [], spec: {} };
    const body = await ctx.api("/v1/speculative", { dataset, router, experiment, status: "complete" });
    const byRun = new Map(body.runs.map((r) => [r.run_id, r]));
    const rows = flat(body.acceptance).map((a) => {
      const r = byRun.get(a.run_id) ?? {};
      return { label: `${shortModel(r.llm)} / ${shortModel(r.slm)} · ${r.dataset} · K=${r.draft_k} (run ${a.run_id})`, dataset: r.dataset, ...a };
    });
    const x = (v) => (v == null ? "none" : `${v.toFixed(2)}×`);
    // Requests imported from a serving engine (python -m warehouse import), marked as such.
    const served = (body.served_acceptance ?? []).map((a) => ({
      label: `imported ${a.engine}: ${shortModel(a.model)} / ${shortModel(a.draft)}, K=${a.k}`, ...a,
    }));
    rows.push(...served);
    const notes = body.runs.map((r) => `run ${r.run_id} (${r.dataset}, K=${r.draft_k}): acceptance ${r.acceptance?.toFixed(2)}, speed-up predicted ${x(r.predicted_speedup)} / measured ${r.measured_speedup == null ? "none (no paired baseline recorded)" : x(r.measured_speedup)}`);
    notes.push(...(body.served ?? []).map((r) => `imported ${r.engine} ${shortModel(r.model)} / ${shortModel(r.draft)} (${r.requests} requests): acceptance ${r.acceptance?.toFixed(2)}, mean accepted length ${r.mean_accepted_length?.toFixed(2) ?? "–"}`));
    ctx.note?.(notes.join("; "));
    return { rows, spec: acceptanceSpec(rows, "label") };
  },
};

export const CHARTS = [
  { ...cof, wide: true },
  sizeChart("scaling-llm", "llm_params", "CoF vs LLM size"),
  sizeChart("scaling-slm", "slm_params", "CoF vs SLM size"),
  { ...ratio, wide: true },
  positions,
  auroc,
  entropy,
  pareto,
  { ...speculative, wide: true },
];

// Charts of one run's page (ctx.run is the run).
export const RUN_CHARTS = [
  {
    id: "run-positions",
    title: "Where interventions fall",
    note: "Share of the run's mismatches in each decile of the output; dashed: share of tokens.",
    routes: ["/v1/positions"],
    applies: () => true,
    async load(ctx) {
      const body = await ctx.api("/v1/positions", { run_id: ctx.run.run_id });
      const rows = flat(body.deciles).map((r) => ({ run: `run ${r.run_id}`, ...r }));
      return { rows, spec: positionSpec(rows, "run", "run") };
    },
  },
  {
    id: "run-entropy",
    title: "System 1 entropy of matched and mismatched tokens",
    note: "",
    routes: ["/v1/uncertainty"],
    applies: () => true,
    async load(ctx) {
      const body = await ctx.api("/v1/uncertainty", { run_id: ctx.run.run_id });
      const ent = body.predictors.find((p) => p.predictor === "entropy");
      ctx.note?.(ent ? `Entropy AUROC ${ent.auroc?.toFixed(3) ?? "–"}, Spearman ${ent.spearman?.toFixed(3) ?? "–"}.` : "");
      const rows = entropyRows(body.entropy_bins);
      return { rows, spec: entropySpec(rows) };
    },
  },
  {
    id: "run-pareto",
    title: "Router replay on this run",
    note: `Consult rate vs share of mismatches caught per router threshold; dashed: a ${BUDGET} budget.`,
    routes: ["/v1/routers/replay"],
    applies: (run) => run.method !== "speculative",
    async load(ctx) {
      const body = await ctx.api("/v1/routers/replay", { run_id: ctx.run.run_id });
      return { rows: body.data, spec: paretoSpec(body.data) };
    },
  },
  {
    id: "run-speculative",
    title: "Acceptance by draft position",
    note: "",
    routes: ["/v1/speculative"],
    applies: (run) => run.method === "speculative",
    async load(ctx) {
      const body = await ctx.api("/v1/speculative", { run_id: ctx.run.run_id });
      const rows = flat(body.acceptance).map((a) => ({ run: `run ${a.run_id}`, ...a }));
      return { rows, spec: acceptanceSpec(rows, "run") };
    },
  },
];
