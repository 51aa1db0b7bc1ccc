"""Decoding methods as step functions, one module each; the batch loops that call them: `collector.decode`.

Each method's module is named after it and exports its `SPEC` (`collector.methods.base.MethodSpec`); the
method's name, settings and needs are a row of `warehouse.vocabulary.METHOD_TERMS`. A new method is that
row and its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from warehouse import vocabulary

if TYPE_CHECKING:
    from collector.methods.base import MethodSpec

SPECS: dict[str, MethodSpec] = {}  # by name, filled from the modules on first use (a test may add one)


def method_spec(name: str) -> MethodSpec:
    """The spec of a method of the vocabulary, from its module `collector.methods.<name>`."""
    if name not in SPECS:
        if vocabulary.method_term(name) is None:
            raise LookupError(f"unknown method {name!r}; choose one of {', '.join(vocabulary.methods())}")
        spec = importlib.import_module(f"{__name__}.{name}").SPEC
        if spec.name != name:
            raise LookupError(f"collector.methods.{name} exports the spec of {spec.name!r}")
        SPECS[name] = spec
    return SPECS[name]


def method_specs() -> tuple[MethodSpec, ...]:
    """Every method's spec, in the vocabulary's order."""
    return tuple(method_spec(name) for name in vocabulary.methods())
