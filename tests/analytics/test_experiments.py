"""A run in another experiment, or an excluded one, changes no answer of this experiment, on every door.

Warehouses are built through the real ingest path from synthetic runs (tests.synthetic); the doors are the
analytics functions, the headline, the report's text and the API's aggregate routes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from analytics.advise import advise
from analytics.frequency import collaboration_frequency
from analytics.pairs import PAIR_KEYS, PAIR_ORDER, WHOLE_ROWS, pairs_in_scope
from analytics.positions import early_share, position_profile
from analytics.report import ReportOptions, write_report
from analytics.scaling import fit_groups, fits_frame, pair_points
from analytics.source import latest_experiment, latest_experiment_is, runs_in_scope, runs_where
from analytics.speculative import acceptance_by_position, speculative_runs
from analytics.summary import format_headline, headline
from analytics.uncertainty import entropy_histogram, mismatch_by_entropy_bin, mismatch_predictors
from api.app import create_app
from api.settings import ApiSettings
from collector.config import RunConfig
from tests.synthetic import add_run, config, ingest, stage_run
from warehouse.db import duckdb_connection
from warehouse.migrate import upgrade
from warehouse.runs import set_excluded

A = "a"
PAIRS = [("L", "S"), ("M", "S"), ("L", "M"), ("L", "XS"), ("M", "XS"), ("S", "XS")]
ROUTES = ("/v1/cof", "/v1/positions", "/v1/uncertainty", "/v1/speculative", "/v1/scaling",
          "/v1/speculative/advice")  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Experiment `a`: oracle runs of six pairs, a speculative run and a model alone."""
    path = tmp_path_factory.mktemp("experiments") / "fsgen.duckdb"
    upgrade(path)
    for i, (llm, slm) in enumerate(PAIRS):
        stage_run(path, config(llm, slm, experiment=A), lengths=[6, 9, 4 + i], cof=0.1 + 0.05 * i, seed=i)
    stage_run(path, config(method="speculative", draft_k=3, experiment=A), lengths=[7, 5, 8], seed=10)
    stage_run(path, config("S", "S", router="never", experiment=A), lengths=[5, 5], cof=0.0, seed=11)
    ingest(path)
    return path


def frames(con: duckdb.DuckDBPyConnection) -> dict[str, pl.DataFrame]:
    """Every analytics door's answer about experiment `a` (default groupings)."""
    scope: dict[str, Any] = {"experiment": A}
    h = headline(con, A)
    points = pair_points(con, filters=scope)
    return {
        "cof": collaboration_frequency(con, filters=scope),
        "cof_by_pair": collaboration_frequency(con, ["llm", "slm", "method", "identity"], filters=scope),
        "positions": position_profile(con, filters=scope),
        "early": early_share(con, ["method"], fraction=0.1, filters=scope),
        "predictors": mismatch_predictors(con, ["method"], filters=scope),
        "entropy_bins": mismatch_by_entropy_bin(con, ["method"], filters=scope),
        "entropy_hist": entropy_histogram(con, ["method"], filters=scope),
        "acceptance": acceptance_by_position(con, ["llm", "slm"], filters=scope),
        "speculative": speculative_runs(con, filters=scope),
        "points": points,
        "fits": fits_frame(fit_groups(points)),
        "advice": advise(con, "oracle", A).candidates,
        **{f"headline_{k}": v for k, v in asdict(h).items() if isinstance(v, pl.DataFrame)},
    }


def answers(path: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(path), read_only=True) as con:
        return frames(con)


def api_answers(path: Path) -> dict[str, Any]:
    """The API's aggregate routes' answers about experiment `a`, and its headline text."""
    app = create_app(ApiSettings(warehouse=path, cache_size=0, ingest=False))
    try:
        with TestClient(app) as client:
            got = {r: client.get(r, params={"experiment": A}).json() for r in ROUTES}
    finally:
        app.state.db.close()
    with duckdb.connect(str(path), read_only=True) as con:
        got["headline"] = format_headline(headline(con, A))
    return got


@pytest.fixture(scope="module")
def base_answers(base: Path) -> dict[str, pl.DataFrame]:
    return answers(base)


@contextmanager
def copy_of(base: Path, tmp: Path) -> Iterator[Path]:
    path = tmp / "copy.duckdb"
    shutil.copy(base, path)
    try:
        yield path
    finally:
        path.unlink()
        shutil.rmtree(tmp / "copy.duckdb.staging", ignore_errors=True)


RUNS = st.builds(
    lambda pair, method, router, k, seed, lengths: config(
        *pair,
        method=method,
        router="always" if method == "speculative" else router,
        threshold=1.0 if router == "entropy" and method != "speculative" else None,
        draft_k=k,
        seed=seed,
    ),  # fmt: skip
    st.sampled_from([*PAIRS, ("S", "S")]),
    st.sampled_from(["oracle", "speculative", "contrastive"]),
    st.sampled_from(["always", "never", "entropy"]),
    st.sampled_from([3, 5]),
    st.integers(0, 2),
    st.just(None),
)


def add_elsewhere(path: Path, run: RunConfig, lengths: list[int], excluded: bool) -> None:
    """Add `run` to another experiment, or to `a` and then exclude it."""
    run_id = add_run(path, replace(run, experiment=A if excluded else "b"), lengths=lengths, cof=0.4, seed=99)
    if excluded:
        with duckdb_connection(path) as con:
            set_excluded(con, [run_id], True)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(elsewhere=RUNS, excluded=RUNS, lengths=st.lists(st.integers(2, 12), min_size=1, max_size=4))
def test_another_experiment_or_an_excluded_run_changes_no_answer(
    base: Path,
    base_answers: dict[str, pl.DataFrame],
    tmp_path: Path,
    elsewhere: RunConfig,
    excluded: RunConfig,
    lengths: list[int],
) -> None:
    with copy_of(base, tmp_path) as path:
        add_elsewhere(path, elsewhere, lengths, excluded=False)
        add_elsewhere(path, excluded, lengths[::-1], excluded=True)
        got = answers(path)
    for name, want in base_answers.items():
        assert_frame_equal(got[name], want, check_exact=False, rel_tol=1e-9), name


def test_api_report_and_headline_read_one_experiment(base: Path, tmp_path: Path) -> None:
    with copy_of(base, tmp_path) as path:
        before = api_answers(path)
        opts = ReportOptions(tmp_path / "before", (), bootstrap=0, quiet=True, experiment=A)
        with duckdb.connect(str(path), read_only=True) as con:
            write_report(con, "w", opts)
        add_elsewhere(path, config("L", "XS", method="contrastive"), [3, 30], excluded=True)
        add_elsewhere(path, config("M", "S", router="never"), [4, 9], excluded=False)
        after = replace(opts, out=tmp_path / "after")
        with duckdb.connect(str(path), read_only=True) as con:
            write_report(con, "w", after)
            latest = headline(con)  # the default scope: the most recent experiment
        assert api_answers(path) == before
    md = [(p / "report.md").read_text() for p in (opts.out, after.out)]
    assert md[0] == md[1] and "experiment `a`" in md[0]
    assert latest.experiment == "b" and latest.runs == 1


def test_baselines_stay_out_of_pairs_and_show_as_models_alone(base: Path) -> None:
    with duckdb.connect(str(base), read_only=True) as con:
        h = headline(con, A)
        cof = collaboration_frequency(con, ["llm", "slm"], filters={"experiment": A})
        both = collaboration_frequency(con, ["llm", "slm"], filters={"experiment": A, "baseline": None})
        points = pair_points(con, filters={"experiment": A})
    assert ("S", "S") not in cof.select("llm", "slm").rows() and ("S", "S") in both.select(
        "llm", "slm"
    ).rows()
    assert not (points["llm"] == points["slm"]).any()
    assert h.alone.select("model", "dataset").rows() == [("S", "builtin:arith")]
    assert h.cof.filter(pl.col("llm") == pl.col("slm")).height == 0


ORDER = ["method", "dataset", "setup", "router", "param_ratio", "llm", "slm"]


def _pairs_by_exists(con: duckdb.DuckDBPyConnection, filters: dict[str, Any]) -> pl.DataFrame:
    """The pairs as one query, the scope an EXISTS over runs: how pair_points read them before it split."""
    where, params = runs_where(filters)
    sql = (
        "SELECT experiment, setup, identity, llm, slm, llm_params, slm_params, param_ratio, method, router, "
        "dataset, runs, tokens, mismatches, cof FROM pair_cof p WHERE EXISTS (SELECT 1 FROM runs r "
        f"{where} AND r.experiment = p.experiment AND r.identity IS NOT DISTINCT FROM p.identity "
        "AND r.llm = p.llm AND r.slm = p.slm AND r.method = p.method AND r.router = p.router "
        "AND r.dataset = p.dataset) ORDER BY method, dataset, setup, router, param_ratio, llm, slm"
    )
    return pl.from_arrow(con.sql(sql, params=params).to_arrow_table())  # type: ignore[return-value]


def test_pair_points_equal_one_query_with_the_scope_as_exists(base: Path, tmp_path: Path) -> None:
    with copy_of(base, tmp_path) as path:
        add_elsewhere(path, config("L", "S", method="oracle", seed=2), [5, 7], excluded=True)
        add_elsewhere(path, config("M", "XS", method="oracle"), [4, 9], excluded=False)
        stage_run(path, config("M", "XS", method="oracle", experiment="b"), lengths=[3, 4], finish=False)
        ingest(path)  # a running run of that pair: in scope, pooled into no pair
        cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
            ({}, {}), ({"experiment": A}, {}), ({"experiment": None}, {}), ({"excluded": True}, {}),
            ({"experiment": A, "baseline": None}, {"router": None}),
            ({"experiment": "b"}, {"method": "oracle"}),
            ({"experiment": [A, "b"], "llm": "L"}, {"dataset": "builtin:arith"}),
            ({"seed": [0, 2]}, {}), ({"experiment": None, "seed": 0}, {"router": None}),
        ]  # fmt: skip
        with duckdb.connect(str(path), read_only=True) as con:
            for filters, args in cases:
                given = {"router": "always", **args}
                scope = {**filters, **{k: v for k, v in given.items() if v is not None}}
                want = _pairs_by_exists(con, scope)  # its order leaves ties (two experiments' pair) open
                got = pair_points(con, filters=filters, **args)  # the view's WHERE where the filters allow
                runs = runs_in_scope(con, scope, PAIR_KEYS)  # always through the runs in scope
                again = pair_points(con, filters=filters, runs=runs, **args)
                for frame in (got, again):
                    assert frame.select(ORDER).equals(want.select(ORDER)), (filters, args)
                    assert_frame_equal(frame.sort(frame.columns), want.sort(want.columns))
                assert got.height > 0 or filters == {"excluded": True}, (filters, args)
                if set(scope) <= WHOLE_ROWS:  # pooled from the runs in scope, with those runs' settings
                    pooled = pairs_in_scope(con, scope)
                    assert_frame_equal(pooled.points, want.sort(PAIR_ORDER, nulls_last=True))
                    cols = ["setup", "identity", "settings"]
                    runs = runs_in_scope(con, scope, cols)
                    assert_frame_equal(pooled.runs.sort(cols), runs.sort(cols))


def default_frames(con: duckdb.DuckDBPyConnection, scope: dict[str, Any]) -> dict[str, pl.DataFrame]:
    """Answers of the doors that take filters, in `scope` (empty: the default, the most recent experiment)."""
    return {
        "cof": collaboration_frequency(con, ["method"], filters=scope),
        "positions": position_profile(con, filters=scope),
        "predictors": mismatch_predictors(con, ["method"], filters=scope),
        "speculative": speculative_runs(con, filters=scope),
        "points": pair_points(con, filters=scope),
    }


def test_a_known_latest_experiment_reads_what_the_sub_select_reads(base: Path, tmp_path: Path) -> None:
    with copy_of(base, tmp_path) as path:
        add_elsewhere(path, config("L", "S"), [5, 8, 3], excluded=False)  # experiment b, now the most recent
        add_elsewhere(path, config(method="speculative", draft_k=3), [6, 4], excluded=False)
        with duckdb.connect(str(path), read_only=True) as con:
            assert latest_experiment(con) == "b"
            default = default_frames(con, {})
            with latest_experiment_is("b"):
                known = default_frames(con, {})
                assert latest_experiment(con) == "b"
            named = {e: default_frames(con, {"experiment": e}) for e in (A, "b")}
            with latest_experiment_is(A):  # the value given is the one read, not the sub-select's
                told_a = default_frames(con, {})
        api = api_default_answers(path)
    for name, want in named["b"].items():
        assert_frame_equal(default[name], want), name
        assert_frame_equal(known[name], want), name
        assert_frame_equal(told_a[name], named[A][name]), name
    assert not named[A]["cof"].equals(named["b"]["cof"])
    assert api["default"] == api["b"] and api["default"] != api[A]


def api_default_answers(path: Path) -> dict[str, Any]:
    """The API's aggregate routes with no experiment named, and naming each one."""
    app = create_app(ApiSettings(warehouse=path, cache_size=0, ingest=False))
    try:
        with TestClient(app) as client:
            return {
                name: {r: client.get(r, params=params).json() for r in ROUTES}
                for name, params in (("default", {}), (A, {"experiment": A}), ("b", {"experiment": "b"}))
            }
    finally:
        app.state.db.close()
