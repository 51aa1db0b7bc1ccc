"""The notebook API: the functions a researcher calls, importable from `analytics` directly.

Each takes a warehouse (a path, or an open DuckDB connection) first and returns a polars DataFrame or a
frozen dataclass; the API and the report call the same functions. Names resolve lazily (PEP 562), so
`import analytics` stays cheap and each entry point loads only what it uses. The README's "Python API"
section lists them with an example (run by tests/analytics/test_notebook_api.py).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module (or (module, its name there)): one place that says where each public function lives.
# `advise` and `emit` are also submodule names, which an import of the submodule would rebind here, so
# their functions are exported as `speculative_advice` and `engine_settings`.
EXPORTS: dict[str, str | tuple[str, str]] = {
    # CoF by any grouping, pooled and per sample with intervals
    "collaboration_frequency": "analytics.frequency",
    # the scaling law: pairs, the paper's fit per method and dataset, the law comparison
    "pair_points": "analytics.scaling",
    "fit_pairs": "analytics.scaling",
    "fit_groups": "analytics.scaling",
    "fit_cof": "analytics.law_choice",
    # uncertainty
    "mismatch_predictors": "analytics.uncertainty",
    "mismatch_by_entropy_bin": "analytics.uncertainty",
    "entropy_histogram": "analytics.uncertainty",
    # positions
    "position_profile": "analytics.positions",
    "early_share": "analytics.positions",
    # router replay
    "replay": "analytics.routers",
    "best_threshold": "analytics.routers",
    # speculative decoding, the advisor, engines' settings, served acceptance
    "acceptance_by_position": "analytics.speculative",
    "speculative_runs": "analytics.speculative",
    "replay_from_oracle": "analytics.speculative",
    "speculative_advice": ("analytics.advise", "advise"),
    "advise_by_batch_size": "analytics.batch_advice",
    "engine_settings": ("analytics.emit", "emit"),
    "served_summary": "analytics.served",
    "served_by_position": "analytics.served",
    "against": "analytics.served",
    # the headline and the figures
    "headline": "analytics.summary",
    "write_report": "analytics.report",
}
__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module 'analytics' has no attribute {name!r}")
    where = EXPORTS[name]
    module, attr = where if isinstance(where, tuple) else (where, name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *EXPORTS])
