// The overview's charts: each names the /v1 routes it reads and turns their answers into rows (the
// numbers the CSV / JSON buttons download) and a Vega-Lite spec over those rows.

const PAIR_SORT = { field: "llm_params", order: "ascending" };

/** Rows of a grouped /v1 answer, with the group's columns lifted to the top level. */
function flat(rows) {
  return rows.map(({ group, ...rest }) => ({ ...(group ?? {}), ...rest }));
}

function withPair(ctx, rows) {
  return rows.map((r) => ({ pair: ctx.pairLabel(r.llm, r.slm), ...r }));
}

const cof = {
  id: "cof",
  title: "CoF by pair and method",
  note: "Mismatches / generated tokens, complete runs; bars: pooled CoF, whiskers: 95% interval of the per-sample mean.",
  routes: ["/v1/cof"],
  async load(ctx) {
    const { method, dataset, router } = ctx.filters;
    const body = await ctx.api("/v1/cof", { group_by: ["llm", "slm", "method"], method, dataset, router });
    const rows = withPair(ctx, flat(body.data));
    const hasCi = rows.some((r) => r.ci_lo !== undefined && r.ci_lo !== null);
    const enc = {
      x: { field: "pair", type: "nominal", title: "LLM / SLM", axis: { labelAngle: 0 } },
      xOffset: { field: "method" },
      color: { field: "method", type: "nominal", title: "method" },
    };
    const layers = [
      {
        mark: { type: "bar", tooltip: true },
        encoding: { y: { field: "cof", type: "quantitative", title: "CoF" } },
      },
    ];
    if (hasCi) {
      layers.push({
        mark: { type: "rule", color: "#222" },
        encoding: { y: { field: "ci_lo", type: "quantitative" }, y2: { field: "ci_hi" }, color: { value: "#222" } },
      });
    }
    return { rows, spec: { height: 260, data: { values: rows }, encoding: enc, layer: layers } };
  },
};

export const CHARTS = [cof];
export const RUN_CHARTS = [];
