"""A run's identity: the settings that change its tokens or their meaning, derived from RunConfig."""

from __future__ import annotations

from dataclasses import fields, replace

from collector.config import DEFINING, PAIR_SETTINGS, RunConfig, run_identity
from collector.sweeps.local import label
from warehouse.vocabulary import NOT_DEFINING_SETTINGS

BASE = RunConfig(llm="L", slm="S", dataset="builtin:arith", router="entropy", threshold=1.0)


def ids(c: RunConfig) -> tuple[str, str]:
    return run_identity(c.identity_values(device="cpu", dtype="float32"))


def test_the_defining_settings_come_from_the_fields_marks() -> None:
    assert {"device", "dtype", "seed", "temperature", "draft_k", "threshold", "dataset_path"} <= set(DEFINING)
    assert not {"samples", "batch_size", "calibrate", "device_map", "experiment", "allow_inverted"} & set(
        DEFINING
    )
    assert set(NOT_DEFINING_SETTINGS) <= {
        f.name for f in fields(RunConfig)
    }  # no stale name in the vocabulary
    assert set(DEFINING) == {f.name for f in fields(RunConfig)} - set(NOT_DEFINING_SETTINGS)


def test_runs_differing_in_a_defining_setting_differ_in_identity() -> None:
    changed = {"threshold": 2.0, "seed": 1, "max_new_tokens": 8, "shots": 0}
    for name, value in changed.items():
        other = replace(BASE, **{name: value})  # type: ignore[arg-type]
        assert ids(other)[0] != ids(BASE)[0], name
        assert ids(other)[1] != ids(BASE)[1], name  # and in setup: not one scaling fit
    # a method's own settings define its runs
    spec = replace(BASE, method="speculative", router="always", threshold=None)
    contrastive = replace(BASE, method="contrastive")
    for base, name, value in [(spec, "draft_k", 2), (contrastive, "lam", 1.5), (contrastive, "alpha", 0.2)]:
        assert ids(replace(base, **{name: value}))[0] != ids(base)[0], name  # type: ignore[arg-type]
    assert run_identity(BASE.identity_values(device="cuda", dtype="float32"))[0] != ids(BASE)[0]


def test_a_setting_only_other_methods_read_defines_nothing() -> None:
    spec = replace(BASE, method="speculative", router="always", threshold=None)
    for base, name, value in [
        (spec, "lam", 1.5),
        (spec, "weight", 2.0),
        (BASE, "draft_k", 2),
        (BASE, "alpha", 0.5),
    ]:
        other = replace(base, **{name: value})  # type: ignore[arg-type]
        assert ids(other) == ids(base), name
        assert name not in other.changed_settings()  # nor tells sweep cells apart


def test_runs_equal_in_all_defining_settings_pool() -> None:
    for name, value in {"samples": 8, "batch_size": 4, "experiment": "x", "calibrate": False}.items():
        assert ids(replace(BASE, **{name: value})) == ids(BASE), name  # type: ignore[arg-type]
    other_pair = replace(BASE, llm="M")
    assert ids(other_pair)[0] != ids(BASE)[0] and ids(other_pair)[1] == ids(BASE)[1]
    assert set(PAIR_SETTINGS) == {"llm", "slm", "slm_tuned"}


def test_sweep_label_tells_cells_apart_by_their_settings() -> None:
    spec = RunConfig(llm="L", slm="S", dataset="builtin:arith", method="speculative")
    assert label(replace(spec, draft_k=2)) != label(replace(spec, draft_k=4))
    assert "draft_k=2" in label(replace(spec, draft_k=2))


def test_a_sweep_grid_of_one_methods_setting_does_not_multiply_the_others() -> None:
    from collector.sweeps.spec import plan

    spec = {"llm": "L", "slm": "S", "datasets": ["builtin:arith"], "methods": ["oracle", "speculative"]}
    cells = plan({**spec, "draft_k": [2, 4]}).cells
    assert sorted((c.method, c.draft_k) for c in cells) == [
        ("oracle", 5),
        ("speculative", 2),
        ("speculative", 4),
    ]
