"""QA feature building + answer post-processing: the HF example design against this project's.

    python bench/bench_qa_postprocess.py                  # 6,000 MRQA-sized contexts, ~2-3 min on 2 cores
    python bench/bench_qa_postprocess.py --contexts 1000  # a quick look

The data is synthetic (seeded): invented words, contexts whose lengths mix SQuAD/NaturalQ-like
paragraphs (~140 words) with TriviaQA/SearchQA/NewsQA-like documents (~650 words, several
windows each), one question each, max_seq_length 384 and doc_stride 128 as the paper's runs.
The logits are random float16 values (what an --fp16 evaluation hands over).

- HF design (the original `run_qa.py` + `utils_qa.py`): `prepare_validation_features` masks the
  offsets of non-context tokens with None one token at a time and returns Python lists;
  post-processing reads features and examples row by row from the `datasets` tables and walks
  every 20 x 20 start/end pair in Python (the per-window reference loop of
  tests/test_qa_postprocess.py, fed the way utils_qa.py feeds it).
- this project: `QATask.encode` (context span as two integers) and `QATask.prediction_records`
  (`linkbert.qa.postprocess`: columns read through Arrow, blocks of windows scored with numpy).

Both build features with `datasets.map` the same way, and the script checks that both choose
the same answer for every question before printing the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
import common  # noqa: E402  (offline, throw-away datasets cache, interleaved timing, table)
from common import np  # noqa: E402
from test_qa_postprocess import reference_postprocess  # noqa: E402  (the original's loop, kept in one place)


def synthetic_examples(n: int, seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = sorted({"".join(letters[rng.integers(0, 26, size=rng.integers(3, 10))]) for _ in range(6000)})
    zipf = 1 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    columns: dict[str, list] = {"id": [], "question": [], "context": [], "answers": []}
    for i in range(n):
        median = 140 if rng.random() < 0.5 else 650
        length = int(np.clip(rng.lognormal(np.log(median), 0.35), 40, 800))
        words = list(np.array(vocab)[rng.choice(len(vocab), size=length, p=zipf)])
        for j in range(12, length, 15):  # sentences
            words[j] += "."
        context = " ".join(words)
        a = int(rng.integers(0, length - 4))
        answer = " ".join(words[a:a + int(rng.integers(1, 4))])
        question = " ".join(np.array(vocab)[rng.choice(len(vocab), size=rng.integers(6, 14))]) + "?"
        columns["id"].append(f"q{i}")
        columns["question"].append(question)
        columns["context"].append(context)
        columns["answers"].append({"answer_start": [context.index(answer)], "text": [answer]})
    return columns


def hf_prepare_validation_features(tokenizer, max_seq_length: int, doc_stride: int):
    """The original's evaluation features (question first, right padding)."""
    def prepare(examples):
        tokenized = tokenizer(examples["question"], examples["context"], truncation="only_second",
                              max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
                              return_offsets_mapping=True, padding="max_length")
        sample_mapping = tokenized.pop("overflow_to_sample_mapping")
        tokenized["example_id"] = []
        for i in range(len(tokenized["input_ids"])):
            sequence_ids = tokenized.sequence_ids(i)
            tokenized["example_id"].append(examples["id"][sample_mapping[i]])
            tokenized["offset_mapping"][i] = [(o if sequence_ids[k] == 1 else None)
                                              for k, o in enumerate(tokenized["offset_mapping"][i])]
        return tokenized
    return prepare


class RowOffsets:
    """`features[i]["offset_mapping"]` one `datasets` row at a time, as utils_qa.py reads it: it
    indexes the row twice, once for the offsets and once for `token_is_max_context`."""

    def __init__(self, features) -> None:
        self.features = features

    def __getitem__(self, i: int):
        self.features[i].get("token_is_max_context", None)
        return self.features[i]["offset_mapping"]


def hf_postprocess(examples, features, logits: np.ndarray) -> list[str]:
    """utils_qa.py's data access around the per-window loop: features and examples row by row."""
    example_id_to_index = {k: i for i, k in enumerate(examples["id"])}
    feature_example = [example_id_to_index[feature["example_id"]] for feature in features]
    contexts = [example["context"] for example in examples]
    answers, _ = reference_postprocess(contexts, feature_example, logits[:, 0], logits[:, 1], RowOffsets(features))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=int, default=6000)
    parser.add_argument("--max_seq_length", type=int, default=384)
    parser.add_argument("--doc_stride", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the median is reported")
    args = parser.parse_args()

    import datasets
    from transformers import BertTokenizerFast

    from linkbert.core.args import parse_args
    from linkbert.core.task import TaskContext
    from linkbert.qa.run_qa import QAArguments, QATask
    from linkbert.tiny import build_vocab

    common.quiet()
    datasets.disable_progress_bars()
    columns = synthetic_examples(args.contexts)
    examples = datasets.Dataset.from_dict(columns)
    vocab = Path(common.WORKDIR) / "vocab.txt"
    vocab.write_text("\n".join(build_vocab(columns["context"] + columns["question"], max_words=100_000)) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    task = QATask(*parse_args(QAArguments, ["--model_name_or_path", "unused", "--output_dir", "unused", "--fp16",
                                            "--doc_stride", str(args.doc_stride)]))
    ctx = TaskContext(tokenizer, args.max_seq_length, pad_to_max_length=task.pads_to_max_length)

    def build(fn):
        return examples.map(fn, batched=True, remove_columns=examples.column_names, keep_in_memory=True,
                            load_from_cache_file=False)

    hf_prepare = hf_prepare_validation_features(tokenizer, args.max_seq_length, args.doc_stride)
    features = common.interleaved({"hf": lambda: build(hf_prepare),
                                   "ours": lambda: build(lambda batch: task.encode(batch, ctx, training=False))},
                                  args.repeats)
    hf_features, our_features = features["hf"].result, features["ours"].result
    assert len(hf_features) == len(our_features)
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(len(our_features), 2, args.max_seq_length)) * 3).astype(np.float16)
    outputs = list(logits.astype(np.float32))  # what Engine.predict hands over: float32 rows of fp16 values
    post = common.interleaved({"hf": lambda: hf_postprocess(examples, hf_features, logits),
                               "ours": lambda: task.prediction_records(outputs, examples, our_features, ctx)},
                              args.repeats)
    ours = [r["prediction_text"] for r in post["ours"].result]
    differ = sum(a != b for a, b in zip(post["hf"].result, ours))
    if differ:
        raise SystemExit(f"{differ} of {len(ours)} answers differ between the two implementations")

    total = {name: common.Timings(wall=[a + b for a, b in zip(features[name].wall, post[name].wall)],
                                  cpu=[a + b for a, b in zip(features[name].cpu, post[name].cpu)])
             for name in ("hf", "ours")}
    rows = []
    for step, timings in (("features (tokenise + windows)", features), ("post-processing (logits -> answers)", post),
                          ("total", total)):
        hf, us = timings["hf"], timings["ours"]
        rows.append([step, f"{statistics.median(hf.wall):.2f}", f"{statistics.median(us.wall):.2f}",
                     *common.speedup_cells(hf, us)])
    windows = len(our_features)
    dynamic = dataclasses.replace(ctx, pad_to_max_length=False)  # --dynamic_padding
    lengths = np.array([len(ids) for ids in build(lambda b: task.encode(b, dynamic, training=False))["input_ids"]])
    common.print_table(
        f"QA features + post-processing: {args.contexts} contexts, {windows} windows of {args.max_seq_length} "
        f"tokens (doc_stride {args.doc_stride}), float16 logits",
        ["step", "HF example design (s)", "this project (s)", *common.SPEEDUP_HEADER], rows,
        [f"Identical answers: {len(ours)}/{len(ours)}. Median of {args.repeats} alternating repeats; "
         f"{common.machine()}.",
         f"Post-processing per 1,000 windows: HF design {1000 * statistics.median(post['hf'].wall) / windows:.2f} s, "
         f"this project {1000 * statistics.median(post['ours'].wall) / windows:.3f} s. Features are built once per "
         "run (and cached by datasets); post-processing runs at every evaluation (--eval_steps 1000: about 14 "
         "times in a SQuAD-base run, then dev and test once more).",
         f"--dynamic_padding: {lengths.mean():.0f} tokens per window on average instead of {args.max_seq_length} "
         f"({100 * (1 - lengths.mean() / args.max_seq_length):.0f}% fewer; "
         f"{100 * np.mean(lengths < args.max_seq_length):.0f}% of windows are shorter)."])


if __name__ == "__main__":
    main()
