// The charts: each names the /v1 routes it reads and turns their answers into rows (the numbers its
// CSV / JSON buttons download) and a Vega-Lite spec over those rows. No analysis happens here: every
// number comes from the API (which calls `analytics`); the charts only lay them out.
import { htmlTable, pairLabel, seriesColor, shortModel } from "./common.js";

const BUDGET = 0.2; // consult budget marked on the router curves
const BAND_POINTS = 7; // ratios at which the scaling law's interval is asked for
const MAX_BANDS = 12; // fits drawn with their law (each asks /v1/scaling/predict at BAND_POINTS ratios)

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

/** A method with the settings that tell its runs from the others' (K, τ, λ ...): one series of a chart. */
function seriesOf(r) {
  return r.settings ? `${r.method} · ${r.settings}` : r.method;
}

const cof = {
  id: "cof",
  title: "CoF by pair and method",
  note: "Mismatches / generated tokens of complete runs: bars the pooled CoF, whiskers its 95% interval (ratio estimator, delta method over samples). The per-sample mean with its t interval and the design effect are in the CSV / JSON.",
  routes: ["/v1/cof"],
  async load(ctx) {
    // By identity: runs that differ in a setting that defines a run (τ, K, λ, ...) are separate bars.
    const body = await ctx.api("/v1/cof", { group_by: ["llm", "slm", "method", "dataset", "identity"], ...runFilters(ctx.filters) });
    const rows = withPair(flat(body.data)).map((r) => ({ ...r, series: seriesOf(r) }));
    // One panel per dataset, one above the other: each pair's bars side by side, one colour per series.
    const spec = {
      data: { values: rows },
      facet: { row: { field: "dataset", type: "nominal", title: null, header: { labelAngle: 0, labelOrient: "top", labelAnchor: "start" } } },
      spec: {
        height: 180,
        encoding: {
          x: n("pair", "LLM / SLM", { sort: null }),
          xOffset: n("series"),
          color: seriesColor(rows, "series", "method · settings"),
        },
        layer: [
          { mark: { type: "bar", tooltip: true }, encoding: { y: q("cof", "CoF") } },
          { mark: { type: "rule", strokeWidth: 1.5 }, encoding: { y: q("cof_lo"), y2: { field: "cof_hi" }, color: { value: "#1d2433" } } },
        ],
      },
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
  const points = withPair(body.points).filter((p) => p.cof !== null).map((p) => ({ ...p, series: seriesOf(p) }));
  const fits = body.fits.map((g) => ({ ...g, series: seriesOf(g) }));
  const curves = [];
  for (const g of fits.filter((f) => f.fit).slice(0, MAX_BANDS)) {
    const ratios = points.filter((p) => p.method === g.method && p.dataset === g.dataset && p.setup === g.setup).map((p) => p.param_ratio);
    // Over the pairs' range only: a law says nothing about ratios no pair has.
    const lo = Math.min(...ratios);
    const hi = Math.max(...ratios);
    const grid = Array.from({ length: BAND_POINTS }, (_, i) => lo * (hi / lo) ** (i / (BAND_POINTS - 1)));
    const preds = await Promise.all(
      grid.map((ratio) =>
        ctx.api("/v1/scaling/predict", { method: g.method, dataset: g.dataset, router: router ?? "always", ratio, bootstrap: 100, experiment, setup: g.setup, law: "paper" })
      )
    );
    // An unidentified law is its log-linear limit, no finding: its line is dashed and it has no band.
    const identified = g.note === "ok";
    const law = identified ? "identified" : "unidentified (its log-linear limit)";
    for (const p of preds) curves.push({ method: p.method, dataset: p.dataset, series: g.series, law_fit: law, param_ratio: p.ratio, law: p.value, lo: identified ? p.lo : null, hi: identified ? p.hi : null });
  }
  return { points, curves, fits };
}

/** A log axis over the values' own range with some room either side (one value alone is not a range). */
function logScale(values) {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return { type: "log", domain: [lo / 1.5, hi * 1.5], nice: false };
}

/** One panel per dataset, side by side, sharing both axes. */
const byDataset = { column: { field: "dataset", type: "nominal", title: null, header: { labelOrient: "top" } } };

function sizeChart(id, field, title) {
  return {
    id,
    title,
    note: "Pooled CoF of each (LLM, SLM) pair and method (runs with router always), against counted parameters; one panel per dataset.",
    routes: ["/v1/scaling"],
    async load(ctx) {
      const { points } = await scalingData(ctx);
      if (!points.length) return { rows: [], spec: {} };
      const spec = {
        data: { values: points },
        facet: byDataset,
        spec: {
          height: 200,
          mark: { type: "point", filled: false, strokeWidth: 2, size: 70, tooltip: true },
          encoding: {
            x: q(field, `${title.replace("CoF vs ", "")} (parameters)`, { scale: logScale(points.map((p) => p[field])), axis: { format: "~s", labelOverlap: "greedy", tickCount: 4 } }),
            y: q("cof", "CoF", { scale: { zero: true } }),
            color: seriesColor(points, "series", "method · settings"),
            shape: n("method", "method"), // oracle and greedy speculative coincide: shapes keep both visible
          },
        },
      };
      return { rows: points, spec };
    },
  };
}

/** One row per fitted series: the law its pairs support and the paper's, as a table under the chart. */
function fitRow(g) {
  const chosen = g.laws?.candidates?.[0];
  const coef = chosen ? (chosen.names ?? []).map((k, i) => `${k}=${Number(chosen.params?.[i]).toPrecision(3)}`).join(" ") : "";
  const paper = g.fit && g.note === "ok" ? `γ=${g.fit.gamma.toFixed(3)} α=${g.fit.alpha.toFixed(3)} β=${g.fit.beta.toFixed(3)}` : "no finding";
  return {
    dataset: g.dataset,
    series: g.series,
    pairs: g.pairs,
    law: chosen ? `${chosen.form}: ${coef}` : g.laws_note || "none",
    error: g.laws?.nested_loo_rmse ?? chosen?.loo_rmse ?? null,
    paper,
  };
}

const FIT_COLUMNS = [["dataset", "dataset", false], ["series", "method · settings", false], ["pairs", "pairs", 0],
  ["law", "law the pairs support", false], ["error", "leave-one-pair-out RMSE", 3], ["paper", "paper's law", false]];

const ratio = {
  id: "scaling-ratio",
  title: "CoF vs parameter ratio R, with the fitted law",
  note: "One panel per dataset. Points: pairs. Lines: the paper's CoF = γ·R^(−α) + β fitted per method and setting, over the pairs' range of R only; dashed where α is unidentified (its log-linear limit, not a finding), else solid with its 95% bootstrap band (/v1/scaling/predict). The table: the law each series' pairs support.",
  routes: ["/v1/scaling", "/v1/scaling/predict"],
  async load(ctx) {
    const { points, curves, fits } = await scalingData(ctx);
    if (!points.length) return { rows: [], spec: {} };
    const rows = [...points.map((p) => ({ kind: "pair", ...p })), ...curves.map((c) => ({ kind: "law", ...c }))];
    const top = Math.min(1, 1.15 * Math.max(...points.map((p) => p.cof), ...curves.map((c) => Math.min(c.hi ?? c.law ?? 0, 1.3 * (c.law ?? 0)))));
    const y = (field) => q(field, "CoF", { scale: { domain: [0, top] } });
    const x = q("param_ratio", "R = N_LLM / N_SLM", { scale: logScale(points.map((p) => p.param_ratio)), axis: { labelOverlap: "greedy", tickCount: 5, format: "~g" } });
    const color = seriesColor(rows, "series", "method · settings");
    const only = (kind) => ({ filter: `datum.kind === '${kind}'` });
    const kinds = [...new Set(curves.map((c) => c.law_fit))].sort(); // solid where identified, else dashed
    const dash = n("law_fit", "paper's law", { scale: { domain: kinds, range: kinds.map((k) => (k === "identified" ? [1, 0] : [5, 3])) } });
    const laws = [
      { transform: [only("law"), { filter: "datum.lo !== null" }], mark: { type: "area", opacity: 0.12, clip: true }, encoding: { x, y: y("lo"), y2: { field: "hi" }, color } },
      { transform: [only("law")], mark: { type: "line", strokeWidth: 2, clip: true }, encoding: { x, y: y("law"), color, strokeDash: dash } },
    ];
    const spec = {
      data: { values: rows },
      facet: byDataset,
      spec: {
        height: 220,
        layer: [
          ...(curves.length ? laws : []),
          { transform: [only("pair")], mark: { type: "point", filled: true, size: 55, tooltip: true }, encoding: { x, y: y("cof"), color, shape: n("method", "method") } },
        ],
      },
    };
    const order = (a, b) => a.series.localeCompare(b.series) || a.dataset.localeCompare(b.dataset);
    ctx.detail?.(htmlTable(FIT_COLUMNS, fits.map(fitRow).sort(order)));
    return { rows, spec };
  },
};

function positionSpec(rows, colorField, colorTitle) {
  return {
    height: 220,
    data: { values: rows },
    layer: [
      {
        mark: { type: "line", point: true, tooltip: true },
        encoding: { x: q("bin", "position decile (0 = first 10% of the output)", { scale: { domain: [0, 9] }, axis: { tickMinStep: 1, format: "d" } }), y: q("mismatch_share", "share of mismatches"), color: seriesColor(rows, colorField, colorTitle) },
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
      encoding: { x: n("pair", "LLM / SLM", { sort: null }), xOffset: n("predictor"), y: q("auroc", "AUROC", { scale: { domain: [0, 1] } }), color: seriesColor(rows, "predictor", "predictor") },
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
        encoding: { x: q("consult_rate", "consult rate (share of tokens to System 2)", { scale: { domain: [0, 1] }, axis: { tickCount: 5 } }), y: q("caught", "share of mismatches caught", { scale: { domain: [0, 1] } }), color: seriesColor(rows, "router", "router"), order: q("consult_rate") },
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

/** Acceptance by draft position, one line per series (`colorField`); one panel per dataset when `facet`. */
function acceptanceSpec(rows, colorField, title, facet = false) {
  const layer = {
    height: facet ? 150 : 200,
    mark: { type: "line", point: true, tooltip: true },
    encoding: {
      x: { field: "position", type: "ordinal", title: "position in the draft (0 = first drafted token)", axis: { labelAngle: 0 } },
      y: q("acceptance_rate", "P(accepted | reached)", { scale: { domain: [0, 1] } }),
      color: seriesColor(rows, colorField, title),
    },
  };
  const byK = { row: { field: "k_label", type: "nominal", title: null, header: { labelAngle: 0, labelOrient: "left" } } };
  // Each panel's x axis spans its own K's positions (a K = 2 panel does not run on to 3).
  const own = { scale: { x: "independent" } };
  return facet ? { data: { values: rows }, facet: { ...byDataset, ...byK }, spec: layer, resolve: own } : { data: { values: rows }, ...layer };
}

const speedup = (v) => (v == null ? null : `${v.toFixed(2)}×`);
const SPEC_COLUMNS = [["run_id", "run", 0], ["dataset", "dataset", false], ["pair", "LLM / SLM", false], ["draft_k", "K", 0],
  ["acceptance", "acceptance", 2], ["predicted", "speed-up predicted", false], ["measured", "speed-up measured", false]];

const speculative = {
  id: "speculative",
  title: "Speculative decoding: acceptance by draft position",
  note: "One panel per dataset and draft length K, one line per pair. The table: each run's acceptance, its speed-up predicted from its cycles and its pair's measured costs, and measured over its own paired baseline (none where the run recorded none).",
  routes: ["/v1/speculative"],
  async load(ctx) {
    const { dataset, router, experiment } = ctx.filters;
    if (ctx.filters.method && ctx.filters.method !== "speculative") return { rows: [], spec: {} };
    const body = await ctx.api("/v1/speculative", { dataset, router, experiment, status: "complete" });
    const byRun = new Map(body.runs.map((r) => [r.run_id, r]));
    const rows = flat(body.acceptance).map((a) => {
      const r = byRun.get(a.run_id) ?? {};
      return { pair: pairLabel(r.llm, r.slm), k_label: `K = ${r.draft_k}`, dataset: r.dataset, ...a };
    });
    // Requests imported from a serving engine (python -m warehouse import), marked as such.
    const served = (body.served_acceptance ?? []).map((a) => ({
      pair: `imported ${a.engine}: ${pairLabel(a.model, a.draft)}`, k_label: `K = ${a.k}`, dataset: "imported", ...a,
    }));
    rows.push(...served);
    const table = body.runs.map((r) => ({
      ...r, pair: pairLabel(r.llm, r.slm), predicted: speedup(r.predicted_speedup) ?? "none",
      measured: speedup(r.measured_speedup) ?? "none (no paired baseline)",
    }));
    const imported = (body.served ?? []).map((r) => `imported ${r.engine} ${shortModel(r.model)} / ${shortModel(r.draft)} (${r.requests} requests): acceptance ${r.acceptance?.toFixed(2)}, mean accepted length ${r.mean_accepted_length?.toFixed(2) ?? "–"}`);
    ctx.note?.(imported.join("; "));
    if (table.length) ctx.detail?.(htmlTable(SPEC_COLUMNS, table));
    return { rows, spec: acceptanceSpec(rows, "pair", "LLM / SLM", true) };
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
      return { rows, spec: acceptanceSpec(rows, "run", "run") };
    },
  },
];
