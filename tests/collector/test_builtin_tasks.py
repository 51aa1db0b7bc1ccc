"""Built-in tasks: determinism, disjoint splits, prompt shape, and checkers that accept the references."""

from __future__ import annotations

import re

import pytest

from collector.tasks.builtin import load_builtin, pool
from collector.tasks.builtin.world import BUILTIN_FAMILIES, EXAMPLE_SEPARATOR
from collector.zoo.corpus import corpus_documents


def _question(family: str, prompt: str) -> str:
    """The identifying question line of one example's prompt part."""
    return prompt.split("\n")[0]


@pytest.fixture(scope="module")
def corpus_text() -> str:
    """The start of the zoo's training corpus (base mix and QA-only), joined."""
    return "\n".join(corpus_documents(0, count=3000) + corpus_documents(0, tuned=True, count=1000))


@pytest.mark.parametrize("family", BUILTIN_FAMILIES)
def test_load_shape(family: str) -> None:
    task = load_builtin(family, samples=7, seed=3)
    assert task.name == f"builtin:{family}"
    assert len(task.items) == 7
    assert task.stop_strings and task.checker is not None
    assert len({it.item_id for it in task.items}) == 7
    for item in task.items:
        assert item.reference
        assert item.prompt.count("Question:" if family != "code" else "Task:") == 3  # 2 shots + target


@pytest.mark.parametrize("family", BUILTIN_FAMILIES)
def test_same_seed_same_items(family: str) -> None:
    a, b = load_builtin(family, samples=10, seed=1), load_builtin(family, samples=10, seed=1)
    c = load_builtin(family, samples=10, seed=2)
    assert a == b
    assert [it.item_id for it in a.items] != [it.item_id for it in c.items]


@pytest.mark.parametrize("family", BUILTIN_FAMILIES)
def test_splits_are_disjoint(family: str) -> None:
    test_keys = {ex.key for ex in pool(family, "test")}
    train_keys = {ex.key for ex in pool(family, "train")}
    assert test_keys and train_keys and not test_keys & train_keys
    test_questions = {_question(family, ex.prompt) for ex in pool(family, "test")}
    assert not test_questions & {_question(family, ex.prompt) for ex in pool(family, "train")}


@pytest.mark.parametrize("family", BUILTIN_FAMILIES)
def test_no_test_question_in_training_corpus(family: str, corpus_text: str) -> None:
    leaked = [q for q in (_question(family, ex.prompt) for ex in pool(family, "test")) if q in corpus_text]
    assert leaked == []


@pytest.mark.parametrize("family", BUILTIN_FAMILIES)
def test_shots_come_from_train_split(family: str) -> None:
    train_texts = {ex.text for ex in pool(family, "train")}
    item = load_builtin(family, samples=1, shots=3).items[0]
    *shots, target = item.prompt.split(EXAMPLE_SEPARATOR)
    assert len(shots) == 3 and all(s in train_texts for s in shots)
    assert load_builtin(family, samples=1, shots=0).items[0].prompt == target


@pytest.mark.parametrize("family", ["arith", "choice"])
def test_checker_accepts_reference_answers(family: str) -> None:
    task = load_builtin(family, samples=40, shots=0)
    answers = {_question(family, ex.prompt): ex.answer for ex in pool(family, "test")}
    for item in task.items:
        answer = answers[_question(family, item.prompt)]
        assert task.check(item, answer + "\n\nQuestion: more text")
        assert not task.check(item, " I do not know.")


def test_code_checker_runs_reference_and_rejects_wrong_body() -> None:
    task = load_builtin("code", samples=6, shots=0)
    answers = {_question("code", ex.prompt): ex.answer for ex in pool("code", "test")}
    for item in task.items:
        assert item.prompt.endswith(item.get("prefix") or "")
        assert task.check(item, answers[_question("code", item.prompt)] + "\n\nTask: Write")
        assert not task.check(item, "\n    return None")


def test_unknown_family_and_split() -> None:
    with pytest.raises(ValueError, match="arith"):
        load_builtin("poetry")
    with pytest.raises(ValueError, match="split"):
        load_builtin("arith", split="dev")


def test_corpus_is_deterministic_and_prefix_stable() -> None:
    assert corpus_documents(5, count=50) == corpus_documents(5, count=80)[:50]
    assert corpus_documents(5, count=50) != corpus_documents(6, count=50)
    tuned = corpus_documents(0, tuned=True, count=50)
    assert all(doc.startswith(("Question:", "Task:")) for doc in tuned)


def _level_counts(family: str, field: str) -> dict[str, int]:
    """How many test items of one family sit at each difficulty level."""
    counts: dict[str, int] = {}
    for ex in pool(family, "test"):
        level = dict(ex.extra)[field]
        counts[level] = counts.get(level, 0) + 1
    return counts


@pytest.mark.parametrize(("family", "field"), [("arith", "level"), ("code", "lines")])
def test_difficulty_is_graded_one_to_three(family: str, field: str) -> None:
    counts = _level_counts(family, field)
    assert set(counts) == {"1", "2", "3"}
    assert min(counts.values()) >= len(pool(family, "test")) // 5, counts


def test_arith_solutions_are_gsm8k_shaped() -> None:
    for ex in pool("arith", "test")[:200]:
        lines = ex.answer.strip().split("\n")
        steps = int(dict(ex.extra)["steps"])
        assert len(lines) == steps + 1 and lines[-1] == f"#### {ex.reference}"
        for line in lines[:-1]:
            shown, annotated = line.split(" = <<")
            expr, result = annotated.split(">>")[0].split("=")
            assert shown.split(" has ")[1].replace(" ", "") == expr
            assert eval(expr) == int(result)  # the annotation is right
            assert annotated.split(">>")[1].startswith(f"{result} ")
        assert result == ex.reference


def test_arith_levels_grow_in_digits_then_steps() -> None:
    from collector.tasks.builtin.arith import ARITH_LEVELS

    for ex in pool("arith", "test"):
        extra = dict(ex.extra)
        digits, steps = ARITH_LEVELS[int(extra["level"])]
        assert (extra["digits"], extra["steps"]) == (str(digits), str(steps))
        start = int(ex.prompt.split(" has ")[1].split(" ")[0])
        assert len(str(start)) == digits and ex.answer.count("<<") == steps


def test_choice_letter_follows_the_options_and_recall() -> None:
    for ex in pool("choice", "test")[:100]:
        options = [line for line in ex.prompt.split("\n") if line.startswith("- ")]
        assert [line[2:5] for line in options] == ["(A)", "(B)", "(C)", "(D)"]
        assert ex.prompt.endswith("\nAnswer:") and ex.answer.endswith(f"The answer is {ex.reference}.")
        value = next(line[6:] for line in options if line.startswith(f"- ({ex.reference}) "))
        assert f" {value} ({ex.reference})." in ex.answer


def test_choice_values_keep_their_slot() -> None:
    # The letter follows from the recalled value: each value always sits in the same slot, and the options
    # are four distinct values of the asked attribute, one per slot.
    from collector.tasks.builtin.choice import entities, option_slot
    from collector.tasks.builtin.world import ATTRIBUTES, LETTERS, QUESTIONS

    facts = {e.name: dict(e.facts) for e in entities()}
    for ex in pool("choice", "test") + pool("choice", "train")[:300]:
        asked = ex.prompt.split("\n")[0].removeprefix("Question: ")
        attribute = next(a for a, q in QUESTIONS.items() if asked.startswith(q.split("{")[0]))
        options = [line[6:] for line in ex.prompt.split("\n") if line.startswith("- (")]
        assert len(set(options)) == 4 and all(v in ATTRIBUTES[attribute] for v in options)
        assert [option_slot(attribute, v) for v in options] == [0, 1, 2, 3]
        name = ex.answer.split()[0]  # the answer restates the fact: "<name> lives in ..."
        assert options[LETTERS.index(ex.reference)] == facts[name][attribute]  # the letter marks the value


def test_fact_mentions_have_a_long_tail() -> None:
    from collector.tasks.builtin.choice import entities

    text = "\n".join(corpus_documents(0, count=4000))
    names = [e.name for e in entities()]
    mentions = [text.count(f"{n} ") for n in names]
    head, tail = sum(mentions[:30]) / 30, sum(mentions[-150:]) / 150
    assert head > 5 * tail > 0
    assert len(names) >= 200


def test_code_families_run_and_have_a_long_tail() -> None:
    from collector.tasks.builtin.code import CODE_FAMILIES

    test = pool("code", "test")
    for ex in test:  # every reference body passes its own asserts
        extra = dict(ex.extra)
        exec(extra["prefix"] + ex.answer + "\n" + extra["tests"], {})
    bands = {dict(ex.extra)["band"] for ex in test}
    assert bands == {"frequent", "middle", "rare"}
    text = "\n".join(corpus_documents(0, count=3000))

    def pattern(desc: str) -> str:
        body = re.escape(desc[0].upper() + desc[1:]).replace(re.escape("{p}"), r"\w+")
        return '"""' + body.replace(re.escape("{k}"), r"\d").replace(re.escape("{c}"), "[a-z]") + "[.,]"

    written = [len(re.findall(pattern(desc), text)) for desc, *_ in CODE_FAMILIES.values()]
    assert sum(written[:6]) > 3 * sum(written[-6:]) > 0, written


def test_code_bodies_grow_with_lines() -> None:
    for ex in pool("code", "test")[:200]:
        lines = int(dict(ex.extra)["lines"])
        body = ex.answer.strip("\n").split("\n")
        assert len(body) == lines and body[-1].startswith("    return ")
