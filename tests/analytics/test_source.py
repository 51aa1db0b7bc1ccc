"""The runs' scope and labels every analysis reads (analytics.source)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from analytics.source import setting_labels
from tests.synthetic import add_run, config
from warehouse.migrate import upgrade


def test_setup_labels_name_only_settings_the_method_reads(tmp_path: Path) -> None:
    """Two speculative setups are told apart by K alone: λ, recorded with one of them, is contrastive's
    setting, not theirs. The oracle and contrastive setups, alone of their method, carry no label."""
    path = tmp_path / "w.duckdb"
    upgrade(path)
    cells = {
        "oracle": config(),
        "contrastive": config(method="contrastive", lam=1.5),
        "K=2": config(method="speculative", draft_k=2, lam=1.5),
        "K=4": config(method="speculative", draft_k=4),
    }
    ids = {
        name: add_run(path, cfg, lengths=[5, 6], cof=0.2, seed=i)
        for i, (name, cfg) in enumerate(cells.items())
    }
    labels = dict(setting_labels(path, "setup").iter_rows())
    with duckdb.connect(str(path), read_only=True) as con:
        setup = dict(con.execute("SELECT run_id, setup FROM runs").fetchall())
    assert {name: labels[setup[i]] for name, i in ids.items()} == {
        "oracle": "", "contrastive": "", "K=2": "draft_k=2", "K=4": "draft_k=4",
    }  # fmt: skip
