"""Few-shot MRQA (--train_fraction) and SQuAD with distracting documents."""

import json
import random
import sys

import pytest
from conftest import REPO, run_task, sample_dir

from linkbert.core.errors import UserError
from linkbert.qa.run_qa import QATask, fraction_subsample
from linkbert.tasks import TASKS

sys.path.insert(0, str(REPO / "scripts"))
import add_distracting_documents as distract  # noqa: E402
from preprocess_common import run_cli  # noqa: E402

QA = sample_dir("squad_hf")


def short_questions(path, n: int) -> None:
    """n questions whose contexts fit one window each: windows == questions."""
    rng = random.Random(1)
    with open(path, "w") as f:
        for i in range(n):
            words = [f"w{rng.randrange(50)}" for _ in range(12)]
            context = " ".join(words)
            f.write(json.dumps({"id": f"q{i}", "question": "where is it", "context": context,
                                "answers": {"answer_start": [context.index(words[5])], "text": [words[5]]}}) + "\n")


def test_fraction_subsample_is_seeded_and_model_independent():
    first = fraction_subsample(1000, 0.1, seed=42)
    assert len(first) == 100 and first == sorted(set(first)) and first == fraction_subsample(1000, 0.1, seed=42)
    assert first != fraction_subsample(1000, 0.1, seed=43)
    assert fraction_subsample(7, 0.1, seed=1) and len(fraction_subsample(7, 1.0, seed=1)) == 7


def test_few_shot_run_trains_on_the_seeded_fraction(tmp_path, tiny_model):
    train = tmp_path / "train.json"
    short_questions(train, 40)
    model = tiny_model(sorted(QA.glob("*.json")))  # shared with the other QA tests; w<N> are unknown words
    out = tmp_path / "run"
    run_task(QATask, ["--model_name_or_path", model, "--train_file", train, "--do_train", "--train_fraction", "0.1",
                      "--max_steps", "1", "--seed", "7", "--max_seq_length", "64", "--doc_stride", "16",
                      "--output_dir", out, "--disable_tqdm"])
    assert json.loads((out / "train_results.json").read_text())["train_samples"] == 4
    assert len(fraction_subsample(40, 0.1, seed=7)) == 4


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_train_fraction_outside_0_1(value, tmp_path, tiny_model):
    with pytest.raises(UserError) as e:
        run_task(QATask, ["--model_name_or_path", tiny_model(sorted(QA.glob("*.json"))), "--train_file",
                          QA / "train.json", "--do_train", "--train_fraction", value, "--output_dir", tmp_path / "o"])
    assert e.value.kind == "bad_flag_value" and "--train_fraction" in str(e.value)
    assert not (tmp_path / "o").exists()


def squad_like(path, articles: int = 4, paragraphs: int = 3, questions: int = 3) -> list[dict]:
    rng = random.Random(0)
    records = []
    for a in range(articles):
        for p in range(paragraphs):
            context = " ".join(f"a{a}p{p}w{rng.randrange(99)}" for _ in range(20))
            for q in range(questions):
                words = context.split()
                answer = " ".join(words[q + 3:q + 5])
                records.append({"id": f"{a}-{p}-{q}", "title": f"Article {a}", "question": f"what is {q}",
                                "context": context, "answers": {"answer_start": [context.index(answer), 0],
                                                                "text": [answer, words[0]]}})
    records[0]["answers"]["text"][0] = "normalised"  # an MRQA-style mismatch: kept as it was
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_distractors_keep_every_answer_aligned(tmp_path):
    src, dst = tmp_path / "dev.json", tmp_path / "out" / "dev.json"
    original = squad_like(src)
    assert distract.main(["--input", str(src), "--output", str(dst), "--seed", "3"]) is None
    new = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["id"] for r in new] == [r["id"] for r in original]
    counts, sides = set(), set()
    for old, rec in zip(original, new):
        assert rec["question"] == old["question"] and rec["title"] == old["title"]
        shift = rec["context"].index(old["context"])
        docs = rec["context"].split(" ")
        added = [d for d in {w[:w.index("w")] for w in docs} if d != old["context"].split()[0][:4]]
        counts.add(len(added))
        for d in added:  # distractors come from other articles
            assert not d.startswith(f"a{old['title'].split()[1]}p")
        sides.add((shift > 0, shift + len(old["context"]) < len(rec["context"])))
        for s_old, s_new, text in zip(old["answers"]["answer_start"], rec["answers"]["answer_start"],
                                      rec["answers"]["text"]):
            assert s_new == s_old + shift
            assert rec["context"][s_new:s_new + len(text)] == old["context"][s_old:s_old + len(text)]
            if old["context"][s_old:s_old + len(text)] == text:
                assert rec["context"][s_new:s_new + len(text)] == text
    assert counts == {1, 2}
    assert {(True, False), (False, True)} <= sides  # prepended and appended both happen
    again = tmp_path / "again.json"
    distract.main(["--input", str(src), "--output", str(again), "--seed", "3"])
    assert again.read_text() == dst.read_text()  # same seed, same file


@pytest.mark.parametrize("content,message", [
    ('{"id": "1", "question": "q", "context": "c"}\n', "not an MRQA/SQuAD record"),
    ("not json\n", "not JSON"),
    ('{"label": "0", "sentence": "a glue line"}\n', "not an MRQA/SQuAD record"),
])
def test_bad_input_is_one_line_and_writes_nothing(content, message, tmp_path, capsys):
    src, dst = tmp_path / "in.json", tmp_path / "out.json"
    src.write_text(content)
    assert run_cli(distract.main, ["--input", str(src), "--output", str(dst)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{src}:1: {message}") and "\n" not in err
    assert not dst.exists()


@pytest.mark.parametrize("model", ["base", "large"])
def test_extra_mrqa_run_scripts(model):
    from test_run_scripts import REFERENCE, dry_run, split_command

    full = {}
    for cmd in dry_run(f"run_examples_mrqa_linkbert-{model}.sh"):
        _, flags = split_command(cmd)
        full[flags["--train_file"].split("/")[2]] = flags
    assert REFERENCE[f"run_examples_mrqa_linkbert-{model}.sh"]  # the full runs are checked there
    outs = set()
    for cmd in dry_run(f"run_examples_mrqa_extra_linkbert-{model}.sh"):
        module, flags = split_command(cmd)
        out = flags.pop("--output_dir")
        assert module == TASKS[out.split("/")[1]].module  # registered by run folder name
        outs.add(out.split("/")[1])
        source = "squad_hf" if "distract" in out else flags["--train_file"].split("/")[2]
        expected = dict(full[source])
        expected.pop("--output_dir")
        if "fewshot" in out:  # the full run's flags plus --train_fraction 0.1
            assert flags.pop("--train_fraction") == "0.1"
        else:
            for flag in ("--train_file", "--validation_file", "--test_file"):
                expected[flag] = expected[flag].replace("squad_hf", "squad_distract_hf")
        assert flags == expected, out
    assert outs == {"hotpot_hf_fewshot10", "triviaqa_hf_fewshot10", "naturalqa_hf_fewshot10", "squad_hf_fewshot10",
                    "squad_distract_hf"}
