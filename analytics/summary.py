"""The headline: what the paper concluded, recomputed from one warehouse, as frames and printable text."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from analytics.positions import early_share
from analytics.scaling import GroupFit, fit_groups, fits_frame, pair_points
from analytics.source import Source, connect, query
from analytics.uncertainty import mismatch_predictors

# The paper's findings are about the plain collaboration: System 2 consulted at every token.
PAPER_FILTERS = {"router": "always", "status": "complete"}
ACCURACY_KEYS = ("llm", "slm", "slm_tuned", "method", "router", "dataset")


@dataclass(frozen=True)
class Headline:
    """CoF by pair and method, accuracies, scaling fits, entropy AUROC and early share, per method."""

    cof: pl.DataFrame
    fits: pl.DataFrame
    group_fits: tuple[GroupFit, ...]
    entropy_auroc: pl.DataFrame
    early: pl.DataFrame
    runs: int
    tokens: int


def run_table(source: Source) -> pl.DataFrame:
    """One row per complete run: its CoF sums, parameter ratio and accuracy counts."""
    return query(
        source,
        """SELECT r.run_id, r.llm, r.slm, r.slm_tuned, r.method, r.router, r.dataset,
                  ml.params AS llm_params, ms.params AS slm_params,
                  CAST(ml.params AS DOUBLE) / ms.params AS param_ratio,
                  c.tokens, c.mismatches,
                  CAST(coalesce(a.checked, 0) AS BIGINT) AS checked,
                  CAST(coalesce(a.correct, 0) AS BIGINT) AS correct
           FROM runs r JOIN run_cof c ON c.run_id = r.run_id
           LEFT JOIN run_accuracy a ON a.run_id = r.run_id
           LEFT JOIN models ml ON ml.name = r.llm LEFT JOIN models ms ON ms.name = r.slm
           WHERE r.status = 'complete' ORDER BY r.run_id""",
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
        runs.filter(pl.col("router") != "never")
        .group_by(keys)
        .agg(
            pl.col("param_ratio").first().alias("param_ratio"),
            pl.len().alias("runs"),
            pl.col("tokens").sum().alias("tokens"),
            pl.col("mismatches").sum().alias("mismatches"),
        )
        .with_columns((pl.col("mismatches") / pl.col("tokens")).alias("cof"))
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
        .sort(["method", "dataset", "router", "param_ratio", "llm", "slm"], nulls_last=True)
    )


def headline(source: Source) -> Headline:
    """Everything the headline table shows, from a warehouse path or an open connection."""
    with connect(source) as con:
        runs = run_table(con)
        fits = fit_groups(pair_points(con, router="always"))
        auroc = mismatch_predictors(con, ["method"], predictors=["entropy"], filters=PAPER_FILTERS)
        early = early_share(con, ["method"], fraction=0.1, filters=PAPER_FILTERS)
    return Headline(
        cof=cof_with_accuracy(runs),
        fits=fits_frame(fits),
        group_fits=fits,
        entropy_auroc=auroc.select("method", "tokens", "mismatches", "auroc", "spearman", "point_biserial"),
        early=early.select(
            "method",
            "mismatches",
            "early_mismatches",
            "mismatch_share",
            "baseline_share",
            "enrichment",
            "p_value",
        ),
        runs=runs.height,
        tokens=int(runs["tokens"].sum() or 0),
    )


def readable(frame: pl.DataFrame) -> pl.DataFrame:
    """Floats to four significant places (p-values in e-notation), missing values as '–', for printing."""
    cols = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype.is_float():
            spec = "{:.2e}" if name == "p_value" else "{:.4g}"
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
        fmt_str_lengths=60,
        float_precision=4,
    ):
        return str(readable(frame))


def headline_sections(h: Headline) -> list[tuple[str, str]]:
    """(title, markdown table or note) per part of the headline, shared by the CLI print and report.md."""
    cof = h.cof.select(
        "llm",
        "slm",
        "method",
        "router",
        "dataset",
        "param_ratio",
        "tokens",
        "cof",
        "acc_slm",
        "acc_llm",
        "acc_collab",
    )
    fits = h.fits.select("method", "dataset", "pairs", "gamma", "alpha", "beta", "r2", "note")
    return [
        (
            "CoF by pair and method (accuracy: SLM alone / LLM alone / collaboration)",
            table_or_note(cof, "no runs"),
        ),
        (
            "Scaling law CoF = gamma * R^(-alpha) + beta (router 'always')",
            table_or_note(fits, "no pairs to fit"),
        ),
        (
            "How well System 1 entropy predicts a mismatch (router 'always')",
            table_or_note(h.entropy_auroc, "no events"),
        ),
        (
            "Share of mismatches in the first 10% of tokens (uniform = baseline)",
            table_or_note(h.early, "no events"),
        ),
    ]


def table_or_note(frame: pl.DataFrame, note: str) -> str:
    """The table, or the note in parentheses when the frame is empty."""
    return markdown_table(frame) if frame.height else f"({note})"


def format_headline(h: Headline) -> str:
    """The headline as plain text: one titled table per finding."""
    parts = [f"fsgen headline: {h.runs} complete run(s), {h.tokens:,} token events"]
    for title, body in headline_sections(h):
        parts.append(f"\n{title}\n{body}")
    return "\n".join(parts)
