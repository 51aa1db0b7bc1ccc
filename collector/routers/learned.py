"""The learned router: a logistic regression on System 1's figures that predicts a mismatch.

Features (the same formulas on the host for training and on the device for routing): System 1's top-1 and
top-2 probabilities, entropy, top-1 − top-2 margin, and log(1 + step). The model is saved as JSON (weights
with the feature scaling folded in), so applying it is one matrix-vector product per step on the device.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from collector.token_stats import Figures
from warehouse.errors import UserError

FEATURES = ("s1_prob", "s1_top2_prob", "s1_entropy", "s1_margin", "log1p_step")
FORMAT = "fsgen-learned-router/1"


def features_no_sync(figures: Figures, step: torch.Tensor) -> torch.Tensor:
    """The classifier's inputs on the device: [B, F] from figures [B] and step [B]."""
    cols = (
        figures.prob,
        figures.prob - figures.margin,
        figures.entropy,
        figures.margin,
        torch.log1p(step.to(figures.prob.dtype)),
    )
    return torch.stack([c.float() for c in cols], dim=-1)


def features_from_events(events: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float64]:
    """The classifier's inputs on the host: [N, F] from token_events columns."""
    prob, margin = events["s1_prob"].astype(np.float64), events["s1_margin"].astype(np.float64)
    cols = (prob, prob - margin, events["s1_entropy"], margin, np.log1p(events["step"].astype(np.float64)))
    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=-1)


@dataclass(frozen=True)
class LearnedModel:
    """A fitted router: consult where sigmoid(x·coef + intercept) > threshold."""

    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5
    features: tuple[str, ...] = FEATURES
    info: dict[str, Any] = field(default_factory=dict)  # training run, sizes, validation AUROC

    def save(self, path: Path) -> None:
        """Write the model as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": FORMAT, **asdict(self)}, indent=1))

    @staticmethod
    def load(path: Path) -> LearnedModel:
        """Read a model written by `save`; refuses other files with a clear message."""
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(
                f"cannot read router model {path} ({exc}); train one with: python -m collector.router train"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path} is not a router model from `python -m collector.router train`")
        if tuple(data["features"]) != FEATURES:
            raise UserError(f"{path} uses features {data['features']}; this fsgen computes {list(FEATURES)}")
        return LearnedModel(
            coef=tuple(float(c) for c in data["coef"]),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            features=tuple(data["features"]),
            info=dict(data.get("info", {})),
        )

    def predict_logit(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The classifier's logit on the host: [N] from features [N, F]."""
        return np.asarray(x @ np.asarray(self.coef) + self.intercept, dtype=np.float64)


@dataclass(frozen=True)
class LearnedRouter:
    """Applies a LearnedModel on the device: one [B, F] × [F] product per step, compared in logit space."""

    weights: torch.Tensor  # [F]
    bias: float
    logit_threshold: float

    def consult_no_sync(self, figures: Figures, step: torch.Tensor) -> torch.Tensor:
        x = features_no_sync(figures, step)  # [B, F]
        logit = x @ self.weights.to(x.device) + self.bias  # [B]
        return logit > self.logit_threshold


def logit(p: float) -> float:
    """log(p / (1 − p)), with 0 and 1 mapped to ∓inf."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def load_learned_router(path: str, threshold: float | None = None) -> LearnedRouter:
    """A router from a saved model; `threshold` (a probability) overrides the saved one."""
    model = LearnedModel.load(Path(path))
    cut = model.threshold if threshold is None else threshold
    weights = torch.tensor(model.coef, dtype=torch.float32)
    return LearnedRouter(weights, model.intercept, logit(cut))


def fit_router(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_], info: dict[str, Any] | None = None
) -> LearnedModel:
    """Fit a class-balanced logistic regression on standardised features and fold the scaling back in."""
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():
        raise UserError(
            "the run's events hold only one class (all mismatches or none); "
            "train on an `always` run of two different models"
        )
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    clf = LogisticRegression(class_weight="balanced", max_iter=1000)
    clf.fit((x - mean) / scale, y)
    coef = clf.coef_[0] / scale  # w·(x − μ)/σ + b = (w/σ)·x + (b − Σ w μ/σ)
    intercept = float(clf.intercept_[0] - np.sum(clf.coef_[0] * mean / scale))
    return LearnedModel(coef=tuple(float(c) for c in coef), intercept=intercept, info=dict(info or {}))
