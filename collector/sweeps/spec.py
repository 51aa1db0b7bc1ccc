"""A sweep file: every `RunConfig` field for the whole sweep or per entry, grids over numeric settings.

The keys a sweep accepts are derived from `dataclasses.fields(RunConfig)`, so a new run setting is a new
sweep setting with no edit here. Five axes multiply (`pairs` or `family`, `datasets`, `methods`,
`routers`, and the grids); an entry of an axis may set any run setting, and its value wins over the
sweep-wide one.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, get_args, get_type_hints

from collector.config import RunConfig
from warehouse import vocabulary
from warehouse.errors import UserError

DEFAULT_DATASETS = ("builtin:arith", "builtin:choice", "builtin:code")
AXES = ("pairs", "family", "datasets", "methods", "routers")
STRUCTURE = (*AXES, "tuned")
# Dataset tables name their file with the loader's words: `name`, `path`.
DATASET_ALIASES = {"name": "dataset", "path": "dataset_path"}
# The field each axis entry must set, and the sweep-wide field that stands in for a missing axis.
AXIS_FIELD = {"datasets": "dataset", "methods": "method", "routers": "router"}


class SweepError(UserError):
    """A sweep file that cannot be expanded; the message says what to change."""


@dataclass(frozen=True)
class SweepPlan:
    """The cells of a sweep, and the combinations left out (with why)."""

    cells: tuple[RunConfig, ...]
    left_out: tuple[str, ...]


def _field_types(name: str) -> tuple[type, ...]:
    hint = get_type_hints(RunConfig)[name]
    args = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return tuple(a for a in args if a is not type(None))


def run_settings() -> tuple[str, ...]:
    """Every setting a run (and so a sweep) accepts: the fields of RunConfig."""
    return tuple(f.name for f in fields(RunConfig))


def grid_settings() -> tuple[str, ...]:
    """The settings that may be given as a list of values (numeric ones)."""
    return tuple(n for n in run_settings() if {int, float} & set(_field_types(n)))


def _type_name(kinds: tuple[type, ...]) -> str:
    return " or ".join("number" if k is float else k.__name__ for k in kinds)


def _checked(name: str, value: Any, where: str) -> Any:
    """`value` if it suits the field `name` (an int where a float is due becomes a float)."""
    kinds = _field_types(name)
    if isinstance(value, bool) and bool not in kinds:
        raise SweepError(f"{where}: {name} = {value!r} should be a {_type_name(kinds)}")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds):
        raise SweepError(f"{where}: {name} = {value!r} should be a {_type_name(kinds)}")
    return value


def _unknown(key: str, where: str, extra: Iterable[str] = ()) -> SweepError:
    allowed = ", ".join([*extra, *run_settings()])
    return SweepError(f"{where}: unknown key {key!r}; allowed keys: {allowed}")


def settings_block(
    table: dict[str, Any], where: str, aliases: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The settings of one table, one dict per point of its grids (lists of numbers)."""
    aliases = aliases or {}
    axes: list[list[tuple[str, Any]]] = []
    for key, value in table.items():
        name = aliases.get(key, key)
        if name not in run_settings():
            raise _unknown(key, where, aliases)
        if isinstance(value, list):
            if name not in grid_settings():
                raise SweepError(
                    f"{where}: {key} takes one value, not a list; only numeric settings are grids "
                    f"({', '.join(grid_settings())})"
                )
            if not value:
                raise SweepError(f"{where}: {key} = [] gives no cells; give at least one value")
            axes.append([(name, _checked(name, v, where)) for v in value])
        else:
            axes.append([(name, _checked(name, value, where))])
    return [dict(point) for point in itertools.product(*axes)]


def _entries(spec: dict[str, Any], axis: str, default: Iterable[str]) -> list[dict[str, Any]]:
    """The entries of a named axis (strings or tables), grid-expanded; `default` if the axis is absent."""
    field = AXIS_FIELD[axis]
    raw = spec.get(axis)
    if raw is None:
        given = field in spec or (axis == "datasets" and "prompts" in spec)  # a prompts file is the data
        return [{}] if given else [{field: v} for v in default]
    if isinstance(raw, str | dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise SweepError(f"{axis} should be a non-empty list of names or tables")
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(raw):
        where = f"{axis}[{i}]"
        if isinstance(entry, str):
            out.append({field: entry})
            continue
        if not isinstance(entry, dict):
            raise SweepError(f"{where} = {entry!r} should be a name or a table")
        aliases = DATASET_ALIASES if axis == "datasets" else None
        points = settings_block(entry, where, aliases)
        if field not in points[0]:
            key = "name" if axis == "datasets" else field
            raise SweepError(f"{where} has no {key!r}; every {axis} table names one")
        out.extend(points)
    return out


def _pair_entry(entry: Any, where: str) -> dict[str, Any]:
    if isinstance(entry, list) and len(entry) in (2, 3) and all(isinstance(m, str) for m in entry):
        keys = ("llm", "slm", "slm_tuned")
        return dict(zip(keys, entry, strict=False))
    if isinstance(entry, dict):
        points = settings_block(entry, where)
        if len(points) > 1:
            raise SweepError(f"{where}: put grids in the sweep or in a method/router entry, not in a pair")
        if not {"llm", "slm"} <= set(points[0]):
            raise SweepError(f"{where} needs llm and slm")
        return points[0]
    raise SweepError(f'{where} = {entry!r} should be ["LLM", "SLM"], ["LLM", "SLM", "TUNED"] or a table')


def zoo_grid() -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Every zoo pair (LLM larger than SLM) and the tuned variant of each SLM that has one."""
    from collector.zoo import TUNED_FOR, zoo_pairs

    pairs = [(f"zoo:{llm}", f"zoo:{slm}") for llm, slm in zoo_pairs()]
    tuned = {f"zoo:{base}": f"zoo:{t}" for base, t in TUNED_FOR.items()}
    return pairs, tuned


def family_pairs(members: list[str], count: Callable[[str], int]) -> list[dict[str, Any]]:
    """Every larger × smaller pair of a family, ordered by counted parameters (smaller SLM first)."""
    sized = sorted(((count(m), m) for m in dict.fromkeys(members)), key=lambda t: t[0])
    return [
        {"llm": llm, "slm": slm}
        for i, (n_slm, slm) in enumerate(sized)
        for n_llm, llm in sized[i + 1 :]
        if n_llm > n_slm
    ]


def _families(raw: Any) -> list[list[str]]:
    if raw == "zoo":
        return []
    if isinstance(raw, list) and raw and all(isinstance(m, str) for m in raw):
        return [raw]
    lists = isinstance(raw, list) and raw and all(isinstance(f, list) and f for f in raw)
    if lists and all(isinstance(m, str) for f in raw for m in f):
        return list(raw)
    raise SweepError('family should be "zoo", a list of models, or a list of such lists (several families)')


def pair_entries(
    spec: dict[str, Any], count: Callable[[str], int]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The pair axis (explicit pairs and family pairs) and the tuned SLM of each SLM."""
    tuned = spec.get("tuned", {})
    if not isinstance(tuned, dict) or not all(isinstance(v, str) for v in tuned.values()):
        raise SweepError('tuned should be a table of SLM = "TUNED SLM"')
    pairs: list[dict[str, Any]] = []
    uses_zoo = spec.get("pairs") == "zoo" or spec.get("family") == "zoo"
    if "pairs" not in spec and "family" not in spec:
        uses_zoo = "llm" not in spec  # llm and slm given sweep-wide make one pair
        pairs = [] if uses_zoo else [{}]
    if uses_zoo:
        zoo, zoo_tuned = zoo_grid()
        pairs += [{"llm": llm, "slm": slm} for llm, slm in zoo]
        tuned = {**zoo_tuned, **tuned}
    raw = spec.get("pairs")
    if raw is not None and raw != "zoo":
        if not isinstance(raw, list) or not raw:
            raise SweepError('pairs should be "zoo" or a non-empty list of ["LLM", "SLM"] pairs')
        pairs += [_pair_entry(e, f"pairs[{i}]") for i, e in enumerate(raw)]
    for members in _families(spec["family"]) if "family" in spec else []:
        pairs += family_pairs(members, count)
    return pairs, dict(tuned)


def _merge(base: dict[str, Any], parts: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Entries override the sweep-wide settings; two entries that disagree on a setting are an error."""
    merged, owner = dict(base), dict[str, str]()
    for axis, part in parts:
        for key, value in part.items():
            if key in owner and merged[key] != value:
                raise SweepError(
                    f"{owner[key]} and {axis} entries both set {key} ({merged[key]!r} vs {value!r}); "
                    "set it in one place"
                )
            merged[key], owner[key] = value, axis
    return merged


def check_keys(spec: dict[str, Any]) -> None:
    """Refuse unknown top-level keys and an axis given twice (as a list and as one setting)."""
    for key in spec:
        if key not in STRUCTURE and key not in run_settings():
            raise _unknown(key, "sweep", STRUCTURE)
    for axis, field in (*AXIS_FIELD.items(), ("pairs", "llm"), ("family", "llm")):
        if axis in spec and field in spec:
            raise SweepError(f"the sweep sets both {axis} and {field}; give one of them")
    if ("llm" in spec) != ("slm" in spec):
        raise SweepError("give llm and slm together (one pair), or pairs/family")


def _label(c: RunConfig) -> str:
    return f"{c.llm} + {c.slm} {c.method}/{c.router} {c.dataset or c.prompts}"


def plan(spec: dict[str, Any], count: Callable[[str], int] | None = None) -> SweepPlan:
    """The cells of a parsed sweep file, each validated; `count` counts a model's parameters."""
    if count is None:
        from collector.sweeps.sizes import count_params

        count = count_params
    check_keys(spec)
    base_points = settings_block({k: v for k, v in spec.items() if k not in STRUCTURE}, "sweep")
    pairs, tuned = pair_entries(spec, count)
    datasets = _entries(spec, "datasets", DEFAULT_DATASETS)
    methods = _entries(spec, "methods", vocabulary.default_methods())
    routers = _entries(spec, "routers", ("always",))
    cells: dict[RunConfig, None] = {}
    left_out: dict[str, None] = {}
    for dataset, pair, method, router, base in itertools.product(
        datasets, pairs, methods, routers, base_points
    ):
        values = _merge(base, [("dataset", dataset), ("pair", pair), ("method", method), ("router", router)])
        m, r = values.get("method", "oracle"), values.get("router", "always")
        term = vocabulary.method_term(m)
        if term is not None and term.needs_tuned_slm:
            values.setdefault("slm_tuned", tuned.get(values.get("slm", "")))
            if values["slm_tuned"] is None:
                left_out[f"{m} on {values.get('slm')}: no tuned SLM (add it under [tuned])"] = None
                continue
        else:
            values.pop("slm_tuned", None)
        for name in set(vocabulary.method_params()) - set(term.params if term else ()):
            values.pop(name, None)  # a sweep-wide K or λ grid does not multiply the methods that ignore it
        if term is not None and term.needs_always and r != "always":
            left_out[f"{m} with router {r}: the LLM decides every token"] = None
            continue
        cells[_build(values)] = None
    return SweepPlan(tuple(cells), tuple(left_out))


def _build(values: dict[str, Any]) -> RunConfig:
    try:
        cell = RunConfig(**values)
    except TypeError as exc:  # llm/slm missing: a pair-less sweep
        raise SweepError(
            f"a cell lacks a setting it needs ({exc}); give pairs, family or llm and slm"
        ) from exc
    try:
        cell.validate()
    except UserError as exc:
        raise SweepError(f"cell {_label(cell)} is invalid: {exc}") from exc
    return cell


def expand(spec: dict[str, Any]) -> list[RunConfig]:
    """The cells of a parsed sweep file."""
    return list(plan(spec).cells)
