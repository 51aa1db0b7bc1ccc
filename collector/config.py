"""A run's configuration: every decoding setting, each default written once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

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
        """Reject impossible combinations with a message that says what to change."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.router not in ROUTERS:
            raise ValueError(f"unknown router {self.router!r}; choose one of {', '.join(ROUTERS)}")
        if self.method == "proxy" and not self.slm_tuned:
            raise ValueError("--method proxy needs --slm-tuned PATH (the tuned small model)")
        if self.router in ("max_prob", "margin", "entropy") and self.threshold is None:
            raise ValueError(f"--router {self.router} needs --threshold T")
        if self.router == "learned" and not self.router_model:
            raise ValueError(
                "--router learned needs --router-model PATH (from python -m collector.router train)"
            )
        if self.draft_stop is not None and self.draft_stop not in DRAFT_STOPS:
            raise ValueError(
                f"unknown --draft-stop {self.draft_stop!r}; choose one of {', '.join(DRAFT_STOPS)}"
            )
        if (self.draft_stop is None) != (self.draft_threshold is None):
            raise ValueError("--draft-stop and --draft-threshold go together; give both or neither")
        if self.draft_stop is not None and self.method != "speculative":
            raise ValueError(f"--draft-stop applies to --method speculative only, not {self.method}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("--batch-size and --max-new-tokens must be at least 1")
        if (self.prompts is None) == (self.dataset is None):
            raise ValueError("give exactly one of --prompts FILE.jsonl or --dataset NAME")
