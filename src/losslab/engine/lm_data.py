"""A language model's tokens: a text (the embedded tiny Shakespeare or a user's file) split and tokenized, or a
user's token dataset (`--dataset package.module:NAME`: a 1-D LongTensor of token ids, a pair (train, valid) of
them, or a Dataset of sequences — LongTensors or dict items {"input_ids": …} — joined into one stream)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import torch

from losslab.components.text import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    ngram_baselines,
    read_text,
    split,
    tiny_shakespeare,
)
from losslab.errors import USER_ERRORS, ConfigError

INPUT_KEYS = ("input_ids", "ids", "tokens")  # what a dict item's token ids are found under


@dataclass
class TextData:
    train_ids: torch.Tensor  # int64
    valid_ids: torch.Tensor
    vocab_size: int
    source: str  # what the report says the data is
    tokenizer: Any = None  # encode/decode; None for a user's token dataset
    chars_per_token: float = 1.0  # characters of validation text per token (bits per character)

    def baselines(self) -> dict[str, float]:
        return _baselines(self.train_ids.numpy().tobytes(), self.valid_ids.numpy().tobytes(), self.vocab_size)

    def encode_prompt(self, prompt: Optional[str]) -> torch.Tensor:
        """The prompt's tokens; None: a new line where the vocabulary has one (nanoGPT's start), else the
        validation split's first token."""
        if prompt is None:
            if self.tokenizer is not None and "\n" in self.decode(range(min(self.vocab_size, 256))):
                return torch.tensor(self.tokenizer.encode("\n"), dtype=torch.int64)
            return self.valid_ids[:1].clone()
        if self.tokenizer is None:
            raise ConfigError("--prompt", "a token dataset has no tokenizer to read a prompt with: leave --prompt "
                              "out (the sample starts from the validation split's first token)")
        if not prompt:
            raise ConfigError("--prompt", "is empty: give some text, or leave it out")
        return torch.tensor(self.tokenizer.encode(prompt, "--prompt"), dtype=torch.int64)

    def decode(self, ids: Any) -> str:
        return self.tokenizer.decode([int(i) for i in ids]) if self.tokenizer is not None else " ".join(
            str(int(i)) for i in ids)


@lru_cache(maxsize=4)
def _baselines(train: bytes, valid: bytes, vocab: int) -> dict[str, float]:
    import numpy as np

    tr, va = np.frombuffer(train, dtype=np.int64), np.frombuffer(valid, dtype=np.int64)
    if vocab ** 3 >= 2 ** 62:  # (a trigram key would not fit in int64: GPT-2's vocabulary)
        tr, va = tr[:0], va[:0]
    return ngram_baselines(tr, va, vocab) if len(tr) >= 3 and len(va) >= 3 else {"uniform": float(np.log(vocab))}


def tokenizer_for(name: str, train: str) -> Any:
    if name == "char":
        return CharTokenizer.fit(train)
    if name == "byte":
        return ByteTokenizer()
    return BPETokenizer(name)


@lru_cache(maxsize=4)
def _text(dataset: str, path: Optional[str], tokenizer: str) -> TextData:
    text = read_text(path) if path is not None else tiny_shakespeare()
    train, valid = split(text)
    if not valid.strip() or not train.strip():
        raise ConfigError("--data", f"{path or dataset} is too short to split into training and validation text")
    tok = tokenizer_for(tokenizer, train)
    train_ids = torch.tensor(tok.encode(train), dtype=torch.int64)
    valid_ids = torch.tensor(tok.encode(valid, "--data"), dtype=torch.int64)
    where = path if path is not None else "tiny Shakespeare (embedded)"
    source = (f"{where}: {len(text):,} characters, {len(train_ids):,} / {len(valid_ids):,} {tokenizer} tokens "
              f"(first 90 % trains, last 10 % validates), vocabulary {tok.vocab_size:,}")
    return TextData(train_ids, valid_ids, tok.vocab_size, source, tok, len(valid) / max(1, len(valid_ids)))


def load_text(cfg: Any) -> TextData:
    """The tokens of `cfg` (config.lm.LMDataConfig), loaded once per process for the same data."""
    if ":" in cfg.dataset:
        return user_tokens(cfg.dataset, cfg.input_key)
    return _text(cfg.dataset, str(cfg.text) if cfg.text is not None else None, cfg.tokenizer)


def user_tokens(spec: str, key: Optional[str] = None) -> TextData:
    """A user's token ids by import path: a LongTensor (or a function returning one) split 90/10, a pair
    (train, valid), or a Dataset of sequences joined in order; the vocabulary is the largest id + 1."""
    from losslab.components.losses import import_object

    obj = import_object(spec, "--dataset")
    if callable(obj) and not isinstance(obj, torch.Tensor) and not hasattr(obj, "__getitem__"):
        try:
            obj = obj()
        except USER_ERRORS as exc:
            raise ConfigError("--dataset", f"calling {spec}() failed: {type(exc).__name__}: {exc}") from None
    if isinstance(obj, tuple) and len(obj) == 2:
        train, valid = stream(obj[0], spec, key), stream(obj[1], spec, key)
    else:
        ids = stream(obj, spec, key)
        cut = int(len(ids) * 0.9)
        train, valid = ids[:cut], ids[cut:]
    vocab = int(max(int(train.max()), int(valid.max()))) + 1
    if int(min(int(train.min()), int(valid.min()))) < 0:
        raise ConfigError("--dataset", f"{spec} has negative token ids")
    return TextData(train, valid, vocab, f"{spec}: {len(train):,} / {len(valid):,} tokens, vocabulary {vocab:,} "
                    "(the largest id + 1)")


def stream(obj: Any, spec: str, key: Optional[str] = None) -> torch.Tensor:
    """One 1-D int64 stream of token ids from a tensor, a numpy array, a list, or a Dataset of sequences (tensors,
    arrays, lists or dict items with an `input_ids` key)."""
    array = hasattr(obj, "__array__") and not isinstance(obj, torch.Tensor)
    if isinstance(obj, torch.Tensor) or array or (isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], int)):
        import numpy as np

        ids = torch.as_tensor(np.asarray(obj)) if array else torch.as_tensor(obj)
        if ids.is_floating_point() or ids.is_complex():
            raise ConfigError("--dataset", f"{spec} gives {str(ids.dtype).replace('torch.', '')} values; token ids "
                              "are integers (a LongTensor)")
        return ids.reshape(-1).long()
    if not hasattr(obj, "__getitem__") or not hasattr(obj, "__len__"):
        raise ConfigError("--dataset", f"{spec} is a {type(obj).__name__}: give a LongTensor of token ids, a pair "
                          "(train, valid) of them, or a Dataset of sequences")
    parts = []
    for i in range(len(obj)):
        item = obj[i]
        if isinstance(item, dict):
            found = key if key is not None else next((k for k in INPUT_KEYS if k in item), None)
            if found is None or found not in item:
                wanted = repr(key) if key is not None else "any of " + ", ".join(INPUT_KEYS)
                raise ConfigError("--input-key" if key is not None else "--dataset", f"{spec}[{i}] is a dict without "
                                  f"{wanted} (its keys: {', '.join(map(str, item))}; name yours with --input-key)")
            item = item[found]
        parts.append(stream(item, spec, key) if not isinstance(item, torch.Tensor) else item.reshape(-1).long())
    if not parts:
        raise ConfigError("--dataset", f"{spec} is empty")
    return torch.cat(parts)
