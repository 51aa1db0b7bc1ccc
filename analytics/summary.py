"""The headline: what the paper concluded, recomputed from one warehouse, as frames and printable text."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from analytics.frequency import MEAN_INTERVAL, POOLED_INTERVAL, collaboration_frequency, pooled_cof
from analytics.positions import INTERVAL_LABEL, early_share
from analytics.scaling import GroupFit, fit_groups, fits_frame, pair_points
from analytics.source import (
    BASELINE,
    Filters,
    Source,
    connect,
    latest_experiment,
    query,
    runs_where,
    scoped,
    setting_labels,
)
from analytics.speculative import speculative_runs
from analytics.speedup import FLOP_MODEL, MEASURED, NO_BASELINE, PREDICTED
from analytics.uncertainty import mismatch_predictors

# The paper's findings are about the plain collaboration: System 2 consulted at every token.
PAPER_FILTERS = {"router": "always", "status": "complete"}
# Runs pool only when equal in every setting that defines a run (identity; its setup names its fit).
ACCURACY_KEYS = ("llm", "slm", "slm_tuned", "method", "router", "dataset", "setup", "identity")
# Residual-bootstrap resamples behind the headline's identifiability check (the report uses --bootstrap).
HEADLINE_BOOTSTRAP = 200
# Two-sided 5% test with 80% power: a difference must be (z_0.975 + z_0.8) standard errors to be seen.
POWER_Z = float(stats.norm.ppf(0.975) + stats.norm.ppf(0.8))


@dataclass(frozen=True)
class Headline:
    """CoF by pair and method, accuracies, scaling fits, entropy AUROC and early share, per method."""

    cof: pl.DataFrame
    alone: pl.DataFrame  # each model alone (baseline runs): its accuracy
    fits: pl.DataFrame
    group_fits: tuple[GroupFit, ...]
    power: pl.DataFrame
    entropy_auroc: pl.DataFrame
    early: pl.DataFrame
    speculative: pl.DataFrame
    runs: int
    tokens: int
    experiment: str | None = None


def run_table(source: Source, filters: Filters | None = None) -> pl.DataFrame:
    """One row per complete run in scope, baselines included (`baseline`): its CoF sums, parameter ratio and
    accuracy counts."""
    where, params = runs_where({"baseline": None, **(filters or {}), "status": "complete"})
    return query(
        source,
        f"""SELECT r.run_id, r.llm, r.slm, r.slm_tuned, r.method, r.router, r.dataset, r.setup, r.identity,
                  {BASELINE.format(a="r")} AS baseline,
                  ml.params AS llm_params, ms.params AS slm_params,
                  CAST(ml.params AS DOUBLE) / ms.params AS param_ratio,
                  c.tokens, c.mismatches,
                  CAST(coalesce(a.checked, 0) AS BIGINT) AS checked,
                  CAST(coalesce(a.correct, 0) AS BIGINT) AS correct
           FROM runs r JOIN run_cof c ON c.run_id = r.run_id
           LEFT JOIN run_accuracy a ON a.run_id = r.run_id
           LEFT JOIN models ml ON ml.name = r.llm LEFT JOIN models ms ON ms.name = r.slm
           {where} ORDER BY r.run_id""",
        params,
    )


def _pooled_accuracy(runs: pl.DataFrame, keys: list[str], name: str) -> pl.DataFrame:
    return runs.group_by(keys).agg(
        pl.when(pl.col("checked").sum() > 0)
        .then(pl.col("correct").sum() / pl.col("checked").sum())
        .alias(name)
    )


def cof_with_accuracy(runs: pl.DataFrame) -> pl.DataFrame:
    """CoF per (llm, slm, method, router, dataset) with accuracy of SLM alone, LLM alone and collaboration.

    SLM alone = runs with router `never` of the same System 1 and dataset; LLM alone = `oracle`/`always`
    runs of the same LLM and dataset (the LLM's greedy output); missing runs leave the accuracy empty.
    """
    keys = list(ACCURACY_KEYS)
    pairs = (
        runs.filter(~pl.col("baseline"))
        .group_by(keys)
        .agg(
            pl.col("param_ratio").first().alias("param_ratio"),
            pl.len().alias("runs"),
            pl.col("tokens").sum().alias("tokens"),
            pl.col("mismatches").sum().alias("mismatches"),
        )
        .with_columns(pooled_cof())
    )
    slm_alone = _pooled_accuracy(
        runs.filter(pl.col("router") == "never"), ["slm", "slm_tuned", "dataset"], "acc_slm"
    )
    llm_alone = _pooled_accuracy(
        runs.filter((pl.col("method") == "oracle") & (pl.col("router") == "always")),
        ["llm", "dataset"],
        "acc_llm",
    )
    collab = _pooled_accuracy(runs, keys, "acc_collab")
    return (
        pairs.join(slm_alone, on=["slm", "slm_tuned", "dataset"], how="left", nulls_equal=True)
        .join(llm_alone, on=["llm", "dataset"], how="left")
        .join(collab, on=keys, how="left", nulls_equal=True)
        .sort(["method", "dataset", "router", "param_ratio", "llm", "slm", "setup"], nulls_last=True)
    )


INTERVAL_COLUMNS = ("samples", "cof_lo", "cof_hi", "design_effect", "cof_mean", "cof_sd", "cof_mean_lo",
                    "cof_mean_hi")  # fmt: skip


def models_alone(runs: pl.DataFrame) -> pl.DataFrame:
    """Accuracy of each model alone (the baseline runs: LLM = SLM, or router `never`), per dataset."""
    alone = runs.filter(pl.col("baseline")).with_columns(pl.col("slm").alias("model"))
    acc = _pooled_accuracy(alone, ["model", "dataset"], "accuracy")
    counts = alone.group_by(["model", "dataset"]).agg(
        pl.len().alias("runs"), pl.col("checked").sum().alias("checked")
    )
    return counts.join(acc, on=["model", "dataset"]).sort("dataset", "model")


def with_sample_intervals(cof: pl.DataFrame, intervals: pl.DataFrame) -> pl.DataFrame:
    """Add each row's samples, the pooled CoF's interval (`cof_lo`, `cof_hi`) and design effect, and the
    per-sample mean with its t interval (`cof_mean`, `cof_mean_lo`, `cof_mean_hi`) and sd."""
    keys = list(ACCURACY_KEYS)
    extra = intervals.select(*keys, *INTERVAL_COLUMNS)
    return cof.join(extra, on=keys, how="left", nulls_equal=True)


def law_power(groups: Sequence[GroupFit], cof: pl.DataFrame) -> pl.DataFrame:
    """Per fitted group: can the samples tell the chosen law from the runner-up, and how many would?

    The two laws differ by `difference` (RMS of their fitted values at the pairs); each pair's CoF is a
    mean over n samples with per-sample sd s (pooled over the pairs), so the difference is seen at the 5%
    level with 80% power once it is (z₀.₉₇₅ + z₀.₈)·s/√n: n = ((z₀.₉₇₅ + z₀.₈)·s / difference)².
    """
    rows = []
    for g in groups:
        if g.laws is None or g.laws.runner_up is None:
            continue
        grp = g.of(cof.filter(pl.col("router") == "always")).drop_nulls("cof_sd")
        if grp.height == 0:
            continue
        nl, ns = grp["llm_params"].to_numpy(), grp["slm_params"].to_numpy()
        gap = g.laws.chosen.value(nl, ns) - g.laws.runner_up.value(nl, ns)
        difference = float(np.sqrt(np.mean(gap**2)))
        sd = float(np.sqrt(np.mean(grp["cof_sd"].to_numpy() ** 2)))
        samples = int(np.median(grp["samples"].to_numpy()))
        needed = math.ceil((POWER_Z * sd / difference) ** 2) if difference > 0 else None
        half = (grp["cof_hi"] - grp["cof_lo"]).median()
        rows.append(
            {
                "method": g.method,
                "dataset": g.dataset,
                "law": g.laws.form,
                "runner_up": g.laws.runner_up.form,
                "difference": difference,
                "half_width": None if half is None else float(half) / 2,  # type: ignore[arg-type]
                "sample_sd": sd,
                "samples": samples,
                "samples_needed": needed,
                "distinguishable": needed is not None and samples >= needed,
            }
        )
    return pl.DataFrame(rows, schema=POWER_SCHEMA)


POWER_SCHEMA = {
    "method": pl.Utf8,
    "dataset": pl.Utf8,
    "law": pl.Utf8,
    "runner_up": pl.Utf8,
    "difference": pl.Float64,
    "half_width": pl.Float64,
    "sample_sd": pl.Float64,
    "samples": pl.Int64,
    "samples_needed": pl.Int64,
    "distinguishable": pl.Boolean,
}


def power_lines(power: pl.DataFrame) -> list[str]:
    """One line per group whose samples cannot tell its two best laws apart, saying how many would."""
    lines = []
    for r in power.filter(~pl.col("distinguishable")).iter_rows(named=True):
        need = "no finite number of" if r["samples_needed"] is None else f"about {r['samples_needed']:,}"
        lines.append(
            f"- {r['method']} / {r['dataset']}: too few samples to tell {r['law']} from {r['runner_up']}: "
            f"they differ by {r['difference']:.2g} (RMS at the pairs), the pairs' 95% half-width is "
            f"{r['half_width']:.2g} ({r['samples']} samples, per-sample sd {r['sample_sd']:.2g}); "
            f"{need} samples per pair would (80% power, 5% level)"
        )
    return lines


def skipped_lines(fits: Sequence[GroupFit]) -> list[str]:
    """Candidate laws skipped for too few pairs or sizes: one line per reason, naming its groups."""
    groups: dict[str, list[str]] = {}
    for g in fits:
        for form, why in () if g.laws is None else g.laws.skipped:
            groups.setdefault(f"{form} {why}", []).append(f"{g.method}/{g.dataset}")
    unfit = [f"- {g.method}/{g.dataset}: no law fitted: {g.laws_note}" for g in fits if g.laws is None]
    return unfit + [f"- skipped in {', '.join(names)}: {why}" for why, names in groups.items()]


def headline(source: Source, experiment: str | None = None) -> Headline:
    """Everything the headline table shows for one experiment (default: the most recent), from a warehouse
    path or an open connection."""
    scope = scoped(None, experiment)
    paper = {**scope, **PAPER_FILTERS}
    with connect(source) as con:
        name = experiment or latest_experiment(con)
        runs = run_table(con, scope)
        points = pair_points(con, router="always", filters=scope)
        fits = fit_groups(points, bootstrap=HEADLINE_BOOTSTRAP)
        intervals = collaboration_frequency(con, ACCURACY_KEYS, filters={**scope, "status": "complete"})
        auroc = mismatch_predictors(con, ["method", "setup"], predictors=["entropy"], filters=paper)
        early = early_share(con, ["method", "setup"], fraction=0.1, filters=paper)
        labels = setting_labels(con, "identity", scope)
        setups = setting_labels(con, "setup", paper)
        where, params = runs_where(paper)
        # a setup is one dataset's: the per-setup tables name it (one row per method and dataset)
        named = setups.join(
            query(con, f"SELECT DISTINCT r.setup, r.dataset FROM runs r {where}", params), on="setup"
        )
        spec = speculative_runs(con, filters={**scope, "status": "complete"})
    cof = with_sample_intervals(cof_with_accuracy(runs), intervals)
    cof = cof.join(labels, on="identity", how="left")
    sizes = points.select("llm", "slm", "llm_params", "slm_params").unique(["llm", "slm"])
    power = law_power(fits, cof.join(sizes, on=["llm", "slm"], how="left"))
    return Headline(
        cof=cof,
        alone=models_alone(runs),
        fits=fits_frame(fits).join(setups, on="setup", how="left"),
        group_fits=fits,
        power=power,
        entropy_auroc=auroc.join(named, on="setup", how="left").select(
            "method", "dataset", "settings", "tokens", "mismatches", "auroc", "spearman", "point_biserial"
        ),
        early=early.join(named, on="setup", how="left").select(
            "method",
            "dataset",
            "settings",
            "samples",
            "mismatches",
            "early_mismatches",
            "mismatch_share",
            "baseline_share",
            "enrichment",
            "enrichment_lo",
            "enrichment_hi",
            "p_value",
            pl.col("fixed_steps").list.eval(pl.element().cast(pl.Utf8)).list.join(", "),
            "enrichment_without_fixed",
            "enrichment_without_fixed_lo",
            "enrichment_without_fixed_hi",
            "p_value_without_fixed",
        ),
        speculative=spec.select(*SPEEDUP_COLUMNS, "measured_note"),
        runs=runs.height,
        tokens=int(runs["tokens"].sum() or 0),
        experiment=name,
    )


SPEEDUP_COLUMNS = ("run_id", "llm", "slm", "dataset", "draft_k", "acceptance", "predicted_speedup",
                   "measured_speedup", "flop_model_speedup")  # fmt: skip


def speedup_section(spec: pl.DataFrame) -> tuple[str, str]:
    """The speculative runs' speed-ups, each labelled, and which runs have no measured one."""
    missing = spec.filter(pl.col("measured_note") == NO_BASELINE)["run_id"].to_list()
    note = f"\n- runs {', '.join(map(str, missing))}: {NO_BASELINE}" if missing else ""
    title = f"Speculative speed-up ({PREDICTED}; {MEASURED}; {FLOP_MODEL})"
    return title, table_or_note(spec.select(SPEEDUP_COLUMNS), "no speculative runs") + note


def readable(frame: pl.DataFrame) -> pl.DataFrame:
    """Floats to four significant places (p-values in e-notation), missing values as '–', for printing."""
    cols = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype.is_float():
            spec = "{:.2e}" if name.startswith("p_value") else "{:.4g}"
            col = col.map_elements(spec.format, return_dtype=pl.Utf8)
        cols.append(col.cast(pl.Utf8).fill_null("–").alias(name) if dtype != pl.Utf8 else col.fill_null("–"))
    return frame.select(cols)


def markdown_table(frame: pl.DataFrame) -> str:
    """A frame as a markdown table with every row and column, floats to four places."""
    with pl.Config(
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=400,
        fmt_str_lengths=80,
        float_precision=4,
    ):
        return str(readable(frame))


def paper_law_column(fits: pl.DataFrame, *, short: bool = False) -> pl.Expr:
    """The paper's γ·R^(−α) + β as text where identified, else why it is no finding; `short`: the verdict
    alone ("unidentified, read as log_ratio"), without the reason after its colon."""
    formula = pl.format(
        "{}*R^(-{}) + {}", *(pl.col(c).round_sig_figs(3).cast(pl.Utf8) for c in ("gamma", "alpha", "beta"))
    )
    unchecked = "no finding: not checked out of sample" + ("" if short else " (see skipped)")
    why = pl.col("note").str.split(":").list.first() if short else pl.col("note")
    return (
        pl.when(pl.col("note") == "ok")
        .then(formula)
        .when(pl.col("note").str.starts_with("not checked"))
        .then(pl.lit(unchecked))
        .otherwise(why)
        .alias("paper_law")
    )


def headline_sections(h: Headline) -> list[tuple[str, str]]:
    """(title, markdown table or note) per part of the headline, shared by the CLI print and report.md."""
    cof = h.cof.select(
        "llm",
        "slm",
        "method",
        "router",
        "dataset",
        "settings",
        "param_ratio",
        "samples",
        "tokens",
        "cof",
        "cof_lo",
        "cof_hi",
        "design_effect",
        "cof_mean",
        "cof_mean_lo",
        "cof_mean_hi",
        "acc_slm",
        "acc_llm",
        "acc_collab",
    )
    laws = h.fits.select(
        "method",
        "dataset",
        "settings",
        "pairs",
        "law",
        "law_fit",
        "law_loo_rmse",
        "law_nested_loo_rmse",
        "runner_up",
        "runner_up_loo_rmse",
        paper_law_column(h.fits),
    )
    notes = power_lines(h.power) + skipped_lines(h.group_fits)
    law_body = table_or_note(laws, "no pairs to fit") + ("\n" + "\n".join(notes) if notes else "")
    return [
        (
            f"CoF by pair and method (cof, cof_lo..cof_hi: {POOLED_INTERVAL}, 95%; design_effect: its "
            f"variance over that of independent tokens; cof_mean, cof_mean_lo..cof_mean_hi: {MEAN_INTERVAL}, "
            "95%; accuracy: SLM alone / LLM alone / collaboration)",
            table_or_note(cof, "no runs"),
        ),
        (
            "Each model alone (baseline runs: LLM = SLM, or router 'never'; not pairs)",
            table_or_note(h.alone, "no baseline runs"),
        ),
        (
            "Which law the pairs support (router 'always'; chosen by leave-one-pair-out RMSE, law_loo_rmse, "
            "ties by AICc; the law's error on an unseen pair is law_nested_loo_rmse: the choice re-run "
            "without each pair)",
            law_body,
        ),
        (
            "How well System 1 entropy predicts a mismatch (router 'always')",
            table_or_note(h.entropy_auroc, "no events"),
        ),
        (
            "Share of mismatches in the first 10% of tokens (uniform = baseline; enrichment = share / "
            f"baseline with its {INTERVAL_LABEL}; p_value: two-sided, clustered by sample; "
            "fixed_steps: steps no sample ever mismatches at, fixed by the prompt format, and the statistic "
            "without them)",
            table_or_note(h.early, "no events"),
        ),
        *([speedup_section(h.speculative)] if h.speculative.height else []),
    ]


def table_or_note(frame: pl.DataFrame, note: str) -> str:
    """The table, or the note in parentheses when the frame is empty."""
    return markdown_table(frame) if frame.height else f"({note})"


def format_headline(h: Headline) -> str:
    """The headline as plain text: one titled table per finding."""
    runs = f"{h.runs} complete run(s), {h.tokens:,} token events"
    name = "no runs yet" if h.experiment is None else f"experiment {h.experiment}"
    parts = [f"fsgen headline, {name}: {runs}"]
    for title, body in headline_sections(h):
        parts.append(f"\n{title}\n{body}")
    return "\n".join(parts)


def compact_cof(cof: pl.DataFrame) -> pl.DataFrame:
    """CoF (router 'always') with one row per pair and dataset and one column per method."""
    always = cof.filter(pl.col("router") == "always")
    if always.height == 0:
        return pl.DataFrame()
    methods = sorted(always["method"].unique().to_list())
    index = [c for c in ("experiment", "llm", "slm", "param_ratio", "dataset") if c in always.columns]
    wide = always.pivot(on="method", index=index, values="cof", aggregate_function="first")
    return wide.select(*index, *methods).sort(
        [c for c in ("experiment", "dataset", "param_ratio") if c in index]
    )


def compact_sections(h: Headline) -> list[tuple[str, str]]:
    """The findings in a screenful: CoF per pair (a column per method), the chosen law per group, and per
    method how well entropy predicts a mismatch and how early mismatches fall."""
    laws = h.fits.select(
        "method", "dataset", "pairs", "law", "law_nested_loo_rmse", paper_law_column(h.fits, short=True)
    )  # fmt: skip
    early = h.early.select(
        "method", "dataset", "settings", "enrichment", "enrichment_lo", "enrichment_hi", "p_value",
        "fixed_steps", "enrichment_without_fixed", "p_value_without_fixed",
    )  # fmt: skip
    keys = ["method", "dataset", "settings"]
    per_method = h.entropy_auroc.select(*keys, pl.col("auroc").alias("entropy_auroc")).join(
        early, on=keys, how="full", coalesce=True, nulls_equal=True
    )
    return [
        (
            "CoF by pair and method (router 'always'; pooled: mismatches / tokens; intervals: "
            "python -m analytics)",
            table_or_note(compact_cof(h.cof), "no runs"),
        ),
        (
            "Which law the pairs support (chosen by leave-one-pair-out RMSE; law_nested_loo_rmse: its error "
            "on an unseen pair, the choice re-run without each pair; paper_law: the paper's law where "
            "identified, else the verdict)",
            table_or_note(laws, "no pairs to fit"),
        ),
        (
            "Per method: entropy AUROC for a mismatch; enrichment of mismatches in the first 10% of tokens "
            "(share / uniform share, 95% interval by sample; p two-sided, clustered by sample; fixed_steps: "
            "steps the prompt format fixes, and the enrichment without them)",
            table_or_note(per_method.sort(keys, nulls_last=True), "no events"),
        ),
    ]


def format_compact_headline(h: Headline, more: str = "") -> str:
    """The headline's findings in one screenful; `more` says where the full tables are."""
    parts = [f"fsgen headline: {h.runs} complete run(s), {h.tokens:,} token events"]
    parts += [f"\n{title}\n{body}" for title, body in compact_sections(h)]
    return "\n".join([*parts, *([f"\n{more}"] if more else [])])
