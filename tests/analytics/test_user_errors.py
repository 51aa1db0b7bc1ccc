"""Every user-facing check of analytics raises AnalyticsError (the API's one 400 path), never a bare
ValueError: each analysis is asked with NaN, negative, zero and unknown names."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analytics.frequency import collaboration_frequency
from analytics.law_choice import fit_cof
from analytics.positions import early_share
from analytics.scaling import fit_scaling_law, predict_cof
from analytics.source import AnalyticsError, ConflictingParameters
from analytics.uncertainty import entropy_histogram, mismatch_predictors
from tests.synthetic import compared_runs

NAN = math.nan
PREDICT = {"method": "oracle", "dataset": "builtin:arith", "ratio": 2.0}
Call = Callable[[Path], Any]

BAD: dict[str, Call] = {
    **{
        f"cof confidence={c}": (lambda p, c=c: collaboration_frequency(p, confidence=c))
        for c in (NAN, -0.5, 0.0, 1.0, 2.0)
    },
    "cof unknown group": lambda p: collaboration_frequency(p, ("nope",)),
    **{f"early k={k}": (lambda p, k=k: early_share(p, k=k)) for k in (0, -3)},
    **{f"early fraction={f}": (lambda p, f=f: early_share(p, fraction=f)) for f in (NAN, -0.1, 0.0, 1.0)},
    "early unknown group": lambda p: early_share(p, ("nope",)),
    "predictors unknown": lambda p: mismatch_predictors(p, predictors=("nope",)),
    "predictors none": lambda p: mismatch_predictors(p, predictors=()),
    **{f"histogram bins={b}": (lambda p, b=b: entropy_histogram(p, bins=b)) for b in (0, -1)},
    **{
        f"predict ratio={r}": (lambda p, r=r: predict_cof(p, **{**PREDICT, "ratio": r}))
        for r in (NAN, -2.0, 0.0)
    },
    "predict sizes zero": lambda p: predict_cof(p, **PREDICT, sizes=(0.0, 10.0)),
    "predict law unknown": lambda p: predict_cof(p, **PREDICT, law="nope"),
    "predict bootstrap negative": lambda p: predict_cof(p, **PREDICT, bootstrap=-1),
    **{
        f"predict confidence={c}": (lambda p, c=c: predict_cof(p, **PREDICT, confidence=c))
        for c in (NAN, 0.0)
    },
    "law sizes zero": lambda p: fit_cof([4.0, 8.0, 16.0], [0.0, 1.0, 2.0], [0.1, 0.2, 0.3]),
    "scaling ratio negative": lambda p: fit_scaling_law([-1.0, 2.0, 4.0], [0.1, 0.2, 0.3]),
}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user_errors") / "fsgen.duckdb"
    compared_runs(path)
    return path


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_question_is_an_analytics_error(two_runs: Path, name: str) -> None:
    with pytest.raises(AnalyticsError) as caught:
        BAD[name](two_runs)
    assert str(caught.value) and "\n" not in str(caught.value)


def test_conflicting_windows_say_so(two_runs: Path) -> None:
    with pytest.raises(ConflictingParameters, match="either k"):
        early_share(two_runs, k=3, fraction=0.2)
