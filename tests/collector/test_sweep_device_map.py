"""`--device-map auto`: the accelerate placement path loads the same model as the plain load (on CPU here)."""

from __future__ import annotations

import torch

from collector.config import RunConfig
from collector.modeling import load_model
from collector.run import build_parser, config_from_args


def test_device_map_load_equals_the_plain_load() -> None:
    cpu = torch.device("cpu")
    plain = load_model("zoo:zoo-s", cpu, torch.float32)
    placed = load_model("zoo:zoo-s", cpu, torch.float32, device_map="auto")
    assert {p.device.type for p in placed.model.parameters()} == {"cpu"}  # accelerate's map: all on the CPU
    assert placed.params == plain.params
    for (name, a), (_, b) in zip(
        plain.model.state_dict().items(), placed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    ids = plain.tokenizer("question: what is two plus three?", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert torch.equal(plain.model(ids).logits, placed.model(ids).logits)
        greedy = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": plain.tokenizer.pad_token_id}
        assert torch.equal(plain.model.generate(ids, **greedy), placed.model.generate(ids, **greedy))


def test_device_map_is_a_run_setting() -> None:
    args = build_parser().parse_args(["--llm", "a", "--slm", "b", "--dataset", "x", "--device-map", "auto"])
    config = config_from_args(args)
    assert config.device_map == "auto"
    assert RunConfig.from_settings(config.settings()) == config
