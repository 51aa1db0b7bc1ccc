"""A run's configuration: every decoding setting, each default written once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from warehouse.errors import UserError

METHODS = ("oracle", "contrastive", "proxy", "speculative")
ROUTERS = ("always", "never", "max_prob", "margin", "entropy", "learned")
DRAFT_STOPS = ("max_prob", "entropy")  # speculative drafting stops at max_prob < τ or entropy > τ


@dataclass(frozen=True)
class RunConfig:
    """One run: models, method, router, data and decoding settings (recorded in `runs.settings`)."""

    llm: str
    slm: str
    method: str = "oracle"
    slm_tuned: str | None = None
    router: str = "always"
    threshold: float | None = None
    router_model: str | None = None
    dataset: str | None = None
    dataset_path: str | None = None
    prompts: str | None = None
    samples: int | None = None
    seed: int = 0
    shots: int | None = None
    batch_size: int = 16
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    draft_k: int = 5
    draft_stop: str | None = None
    draft_threshold: float | None = None
    calibrate: bool = True  # time both models' forwards and the LLM's generate at the start of the run
    alpha: float = 0.1
    lam: float = 0.5
    weight: float = 1.0
    device: str | None = None
    dtype: str | None = None
    device_map: str | None = None  # accelerate's placement over one machine's GPUs ("auto")
    truncate_prompt: bool = False

    def settings(self) -> dict[str, Any]:
        """The JSON-able settings recorded with the run."""
        return asdict(self)

    @staticmethod
    def from_settings(data: dict[str, Any]) -> RunConfig:
        """Rebuild a config from recorded settings (unknown keys ignored)."""
        names = {f.name for f in fields(RunConfig)}
        return RunConfig(**{k: v for k, v in data.items() if k in names})

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
        if self.method not in METHODS:
            return f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"
        if self.router not in ROUTERS:
            return f"unknown router {self.router!r}; choose one of {', '.join(ROUTERS)}"
        if self.method == "proxy" and not self.slm_tuned:
            return "--method proxy needs --slm-tuned PATH (the tuned small model)"
        if self.router in ("max_prob", "margin", "entropy") and self.threshold is None:
            return f"--router {self.router} needs --threshold T"
        if self.router == "learned" and not self.router_model:
            return "--router learned needs --router-model PATH (from python -m collector.router train)"
        if self.method == "speculative" and self.router != "always":
            return (
                f"--method speculative verifies every draft with the LLM; --router {self.router} does not "
                "apply (use --router always, or a lock-step method such as oracle)"
            )
        if self.draft_stop is not None and self.draft_stop not in DRAFT_STOPS:
            return f"unknown --draft-stop {self.draft_stop!r}; choose one of {', '.join(DRAFT_STOPS)}"
        if (self.draft_stop is None) != (self.draft_threshold is None):
            return "--draft-stop and --draft-threshold go together; give both or neither"
        if self.draft_stop is not None and self.method != "speculative":
            return f"--draft-stop applies to --method speculative only, not {self.method}"
        if (self.prompts is None) == (self.dataset is None):
            return "give exactly one of --prompts FILE.jsonl or --dataset NAME"
        return None

    def _number_problem(self) -> str | None:
        """What is wrong with the numeric settings, if anything."""
        for name in FLOAT_SETTINGS:
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                return f"--{_flag(name)} {value} is not a finite number; give a real value"
        for name in ("batch_size", "max_new_tokens", "samples", "draft_k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                hint = " (leave it out for every prompt)" if name == "samples" else ""
                return f"--{_flag(name)} {value} must be at least 1{hint}"
        if self.shots is not None and self.shots < 0:
            return f"--shots {self.shots} must be 0 or more (leave it out for the dataset's default)"
        if self.temperature < 0:
            return f"--temperature {self.temperature} is negative; use 0 (greedy) or more"
        if not 0.0 < self.top_p <= 1.0:
            return f"--top-p {self.top_p} is outside (0, 1]; 1 keeps every token"
        if not 0.0 <= self.alpha <= 1.0:
            return f"--alpha {self.alpha} is outside [0, 1] (the paper uses 0.1)"
        return None


FLOAT_SETTINGS = ("threshold", "temperature", "top_p", "alpha", "lam", "weight", "draft_threshold")


def _flag(name: str) -> str:
    """The command-line flag of a setting."""
    return "lambda" if name == "lam" else name.replace("_", "-")
