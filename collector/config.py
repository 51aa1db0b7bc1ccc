"""A run's configuration: every decoding setting, each default written once."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from warehouse import vocabulary
from warehouse.errors import UserError

# methods, routers and draft-stop rules: warehouse.vocabulary (read at call time)
CHAT_TEMPLATE_MODES = ("auto", "on", "off")  # auto: where the LLM's tokenizer has a chat template
DEFAULT_EXPERIMENT = "default"

# Field metadata of the models of the pair: a run's identity without them is its setup (one scaling fit).
PAIR = {"pair": True}


@dataclass(frozen=True)
class RunConfig:
    """One run: models, method, router, data and decoding settings (recorded in `runs.settings`)."""

    llm: str = field(metadata=PAIR)
    slm: str = field(metadata=PAIR)
    method: str = "oracle"
    slm_tuned: str | None = field(default=None, metadata=PAIR)
    router: str = "always"
    threshold: float | None = None
    router_model: str | None = None
    dataset: str | None = None
    dataset_path: str | None = None
    prompts: str | None = None
    samples: int | None = field(default=None)  # a second batch of samples pools
    seed: int = 0
    shots: int | None = None
    batch_size: int = field(default=16)
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    draft_k: int = 5
    draft_stop: str | None = None
    draft_threshold: float | None = None
    # record the pair's costs (timed once per pair, device and dtype, then reused by later runs)
    calibrate: bool = field(default=True)
    recalibrate: bool = field(default=False)  # time them again all the same
    # prompts whose whole decodes a calibration times at batch 1 (each twice): fewer is cheaper, noisier
    calibration_prompts: int = field(default=4)
    alpha: float = 0.1
    lam: float = 0.5
    weight: float = 1.0
    device: str | None = None
    dtype: str | None = None
    # accelerate's placement over one machine's GPUs ("auto")
    device_map: str | None = field(default=None)
    truncate_prompt: bool = False
    experiment: str = field(default=DEFAULT_EXPERIMENT)  # the named set of runs
    # run a pair whose System 2 is not larger than System 1 (counted parameters)
    allow_inverted: bool = field(default=False)
    chat_template: str = "auto"  # prompts in the LLM's chat format: auto (where it has one), on, off

    def settings(self) -> dict[str, Any]:
        """The JSON-able settings recorded with the run."""
        return asdict(self)

    @staticmethod
    def from_settings(data: dict[str, Any]) -> RunConfig:
        """Rebuild a config from recorded settings (unknown keys ignored)."""
        names = {f.name for f in fields(RunConfig)}
        return RunConfig(**{k: v for k, v in data.items() if k in names})

    def identity_values(self, **resolved: Any) -> dict[str, Any]:
        """The settings that define the run (its tokens or their meaning), with `resolved` values (the
        models' names, the device and dtype the run used) in place of what was asked for; a setting at its
        default is left out, so a setting added later leaves the runs recorded before it as they were."""
        values = {**asdict(self), **resolved}
        return {
            f.name: values[f.name]
            for f in fields(RunConfig)
            if f.name in self.defining() and (f.name in resolved or values[f.name] != f.default)
        }

    def defining(self) -> tuple[str, ...]:
        """The settings that define this run: DEFINING less the settings only other methods read (λ means
        nothing to a speculative run, so `--lambda` does not make it another experiment)."""
        term = vocabulary.method_term(self.method)
        own = set(term.params) if term else set()
        others = set(vocabulary.method_params()) - own
        return tuple(n for n in DEFINING if n not in others)

    def changed_settings(self) -> dict[str, Any]:
        """The defining settings not at their default, beyond the pair (what tells two cells apart)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(RunConfig)
            if f.name in self.defining() and not f.metadata.get("pair") and getattr(self, f.name) != f.default
        }

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def validate(self) -> None:
        """Reject impossible settings with a message that says what to change (the one validator)."""
        for problem in (self._choice_problem(), self._number_problem()):
            if problem:
                raise UserError(problem)

    def _choice_problem(self) -> str | None:
        """What is wrong with the choice of method, router, models and data, if anything."""
        method_problem = self._method_problem()
        if method_problem:
            return method_problem
        if self.router not in vocabulary.routers():
            return f"unknown router {self.router!r}; choose one of {', '.join(vocabulary.routers())}"
        if vocabulary.threshold_rule(self.router) and self.threshold is None:
            return f"--router {self.router} needs --threshold T"
        if self.router == vocabulary.LEARNED_ROUTER and not self.router_model:
            return "--router learned needs --router-model PATH (from python -m collector.router train)"
        if self.chat_template not in CHAT_TEMPLATE_MODES:
            modes = ", ".join(CHAT_TEMPLATE_MODES)
            return f"unknown --chat-template {self.chat_template!r}; choose one of {modes}"
        if (self.prompts is None) == (self.dataset is None):
            return "give exactly one of --prompts FILE.jsonl or --dataset NAME"
        if not self.experiment.strip():
            return "--experiment is empty; name the experiment (or leave it out for 'default')"
        if self.recalibrate and not self.calibrate:
            return "--recalibrate times the costs again, --no-calibrate records none: give one of them"
        return None

    def _method_problem(self) -> str | None:
        """What is wrong with the method and the settings only some methods read, if anything."""
        term = vocabulary.method_term(self.method)
        if term is None:
            return f"unknown method {self.method!r}; choose one of {', '.join(vocabulary.methods())}"
        if term.needs_tuned_slm and not self.slm_tuned:
            return f"--method {self.method} needs --slm-tuned PATH (the tuned small model)"
        if term.needs_always and self.router != "always":
            return (
                f"--method {self.method} has the LLM verify every token; --router {self.router} does not "
                "apply (use --router always, or a lock-step method such as oracle)"
            )
        stops = vocabulary.draft_stops()
        if self.draft_stop is not None and self.draft_stop not in stops:
            return f"unknown --draft-stop {self.draft_stop!r}; choose one of {', '.join(stops)}"
        if (self.draft_stop is None) != (self.draft_threshold is None):
            return "--draft-stop and --draft-threshold go together; give both or neither"
        if self.draft_stop is not None and "draft_stop" not in term.params:
            return f"--draft-stop does not apply to --method {self.method}"
        return None

    def _number_problem(self) -> str | None:
        """What is wrong with the numeric settings, if anything."""
        for name in FLOAT_SETTINGS:
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                return f"--{flag_name(name)} {value} is not a finite number; give a real value"
        for name in ("batch_size", "max_new_tokens", "samples", "draft_k", "calibration_prompts"):
            value = getattr(self, name)
            if value is not None and value < 1:
                hint = " (leave it out for every prompt)" if name == "samples" else ""
                return f"--{flag_name(name)} {value} must be at least 1{hint}"
        if self.shots is not None and self.shots < 0:
            return f"--shots {self.shots} must be 0 or more (leave it out for the dataset's default)"
        if self.temperature < 0:
            return f"--temperature {self.temperature} is negative; use 0 (greedy) or more"
        if not 0.0 < self.top_p <= 1.0:
            return f"--top-p {self.top_p} is outside (0, 1]; 1 keeps every token"
        from collector.methods import method_specs

        return next((p for p in (spec.check(self) for spec in method_specs()) if p), None)


# What defines a run: every field but the vocabulary's NOT_DEFINING_SETTINGS (analytics reads that list too).
DEFINING: tuple[str, ...] = tuple(
    f.name for f in fields(RunConfig) if f.name not in vocabulary.NOT_DEFINING_SETTINGS
)
PAIR_SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig) if f.metadata.get("pair"))


def settings_hash(values: dict[str, Any]) -> str:
    """A short stable hash of JSON-able settings (migration 0007 holds a copy for existing runs)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_identity(values: dict[str, Any]) -> tuple[str, str]:
    """(identity, setup) of a run's defining settings: all of them, and all but the pair's models."""
    setup = {k: v for k, v in values.items() if k not in PAIR_SETTINGS}
    return settings_hash(values), settings_hash(setup)


FLOAT_SETTINGS = ("threshold", "temperature", "top_p", "alpha", "lam", "weight", "draft_threshold")


def flag_name(name: str) -> str:
    """The command-line flag of a setting."""
    return "lambda" if name == "lam" else name.replace("_", "-")
