"""A tiny BERT built locally: the demo's default model and the test suite's.

Nothing is downloaded. The WordPiece vocabulary is made from the given texts (every word, plus
every character as a word start and as a `##` continuation, so any text tokenises without
[UNK]), the weights are random, and the folder is an ordinary `save_pretrained` folder that
`from_pretrained` loads like a hub checkpoint.

    python -m linkbert.tiny OUT_DIR [FILE.json ...]     # texts read from JSON Lines files
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _words(text: str, lowercase: bool) -> list[str]:
    # The same split BERT's basic tokenizer makes: runs of word characters, single punctuation.
    text = text.lower() if lowercase else text
    return re.findall(r"\w+|[^\w\s]", text)


def build_vocab(texts: Iterable[str], lowercase: bool = True, max_words: int = 2000) -> list[str]:
    counts: dict[str, int] = {}
    chars: set[str] = set()
    for text in texts:
        for word in _words(text, lowercase):
            counts[word] = counts.get(word, 0) + 1
            chars.update(word)
    frequent = sorted(counts, key=lambda w: (-counts[w], w))[:max_words]
    single = sorted(chars)
    vocab = SPECIAL_TOKENS + single + ["##" + c for c in single]
    seen = set(vocab)
    vocab += [w for w in frequent if w not in seen]
    return vocab


def build_tiny_model(
    out_dir: str | Path,
    texts: Iterable[str],
    lowercase: bool = True,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 512,
    dropout: float = 0.1,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised tiny BERT and its tokenizer to `out_dir`; return the path."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(texts, lowercase=lowercase)
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 ignores `vocab_file=` (every word becomes [UNK]): pass the path as `vocab`.
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=lowercase)
    tokenizer.model_max_length = max_position_embeddings
    tokenizer.save_pretrained(out)

    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_position_embeddings,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out)
    return out


def texts_from_jsonl(paths: Iterable[str | Path]) -> list[str]:
    """Every string (and list of strings) found in the records of JSON Lines files."""
    texts: list[str] = []

    def collect(value) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)

    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    collect(json.loads(line))
    return texts


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.exit("usage: python -m linkbert.tiny OUT_DIR [FILE.json ...]")
    out, files = argv[0], argv[1:]
    texts = texts_from_jsonl(files) if files else ["the quick brown fox jumps over the lazy dog"]
    print(build_tiny_model(out, texts))


if __name__ == "__main__":
    main()
