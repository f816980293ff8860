"""Text for language models: the embedded tiny Shakespeare (checked against its published hash), a user's UTF-8
file, the contiguous train/validation split (nanoGPT's: the first 90 % trains), the `char` and `byte` tokenizers,
and the n-gram baselines of a split counted exactly (uniform, unigram, bigram, trigram with add-α smoothing), the
ladder a model's validation loss is read against: below the trigram's, it uses more than two characters of
context.

No torch here: numpy counts, so the baselines cost a fraction of a second on a million characters.
"""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from losslab.errors import ConfigError

TINY_SHAKESPEARE = "tinyshakespeare.txt.gz"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"  # of the text
TRAIN_FRACTION = 0.9  # the first 90 % trains, the last 10 % validates (contiguous, as nanoGPT splits)
ALPHA = 0.1  # add-α smoothing of the n-gram baselines


def tiny_shakespeare() -> str:
    """The 1,115,394 characters of tiny Shakespeare (public domain, as char-rnn distributes it), from the
    package's compressed copy; a copy whose hash differs is refused, never trained on."""
    raw = gzip.decompress(resources.files("losslab").joinpath("data", TINY_SHAKESPEARE).read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != TINY_SHAKESPEARE_SHA256:
        raise RuntimeError(f"the embedded {TINY_SHAKESPEARE} has sha256 {digest}, not {TINY_SHAKESPEARE_SHA256}: "
                           "the package is damaged (reinstall it)")
    return raw.decode("utf-8")


def read_text(path: str, option: str = "--data") -> str:
    """A user's text file as UTF-8; an empty, binary or non-UTF-8 file is one line naming `option`."""
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(option, f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise ConfigError(option, f"{path} is empty: a language model needs text to train on")
    if b"\x00" in raw[:65536]:
        raise ConfigError(option, f"{path} looks binary (it has NUL bytes), not a text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(option, f"{path} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                          "save it as UTF-8") from None


def split(text: str, fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """(train, validation): the first `fraction` of the text and the rest, each contiguous."""
    cut = int(len(text) * fraction)
    return text[:cut], text[cut:]


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character of the training text's vocabulary (sorted); a character outside it is refused,
    named, rather than mapped to something else."""

    chars: str

    @staticmethod
    def fit(train: str) -> "CharTokenizer":
        return CharTokenizer("".join(sorted(set(train))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, option: str = "--data") -> list[int]:
        index = {c: i for i, c in enumerate(self.chars)}
        try:
            return [index[c] for c in text]
        except KeyError as exc:
            where = text.index(exc.args[0])
            raise ConfigError(option, f"the character {exc.args[0]!r} (at {where:,}) is not in the vocabulary of "
                              f"the training text ({self.vocab_size} characters)") from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)


@dataclass(frozen=True)
class ByteTokenizer:
    """The UTF-8 bytes: 256 tokens, every text encodable."""

    vocab_size: int = 256

    def encode(self, text: str, option: str = "--data") -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""  # GPT-2's split


class BPETokenizer:
    """Byte-pair encoding through tiktoken (an optional extra: pip install tiktoken): `gpt2` from tiktoken's cache
    (it downloads the vocabulary at first use; without a network a cached copy must be there), or a vocabulary
    file in tiktoken's format (`--tokenizer FILE.tiktoken`: one base64 token and its rank per line), split as
    GPT-2 splits text."""

    def __init__(self, name: str, option: str = "--tokenizer"):
        try:
            import tiktoken
            from tiktoken.load import load_tiktoken_bpe
        except ImportError:
            raise ConfigError(option, f"{name} needs tiktoken, which is not installed (pip install tiktoken)") from None
        try:
            if name == "gpt2":
                self.encoding = tiktoken.get_encoding("gpt2")
            else:
                ranks = load_tiktoken_bpe(str(Path(name).expanduser()))
                self.encoding = tiktoken.Encoding(Path(name).stem, pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                                  special_tokens={})
        except (OSError, ValueError) as exc:
            where = ("tiktoken's gpt2 vocabulary is not in its cache and could not be downloaded; put a copy in "
                     "TIKTOKEN_CACHE_DIR or give a FILE.tiktoken" if name == "gpt2" else f"cannot read {name}")
            raise ConfigError(option, f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
        except Exception as exc:  # (requests' ConnectionError and tiktoken's own errors share no base here)
            raise ConfigError(option, f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None

    @property
    def vocab_size(self) -> int:
        return int(self.encoding.n_vocab)

    def encode(self, text: str, option: str = "--data") -> list[int]:
        try:
            return list(self.encoding.encode_ordinary(text))
        except Exception as exc:  # (a vocabulary without every byte cannot encode some texts)
            raise ConfigError(option, f"the tokenizer cannot encode this text: {type(exc).__name__}: {exc}") from None

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.encoding.decode(list(ids)))


def ngram_baselines(train: Sequence[int], valid: Sequence[int], vocab: int,
                    alpha: float = ALPHA) -> dict[str, float]:
    """The validation cross-entropy, in nats per token, of n-gram models counted on the training tokens: uniform
    (log V), unigram, bigram and trigram, each with add-α smoothing (p = (count + α) / (context count + α V)).
    The bigram predicts every validation token after the first from the one before it, the trigram every token
    after the second from the two before it (contexts inside the validation split)."""
    import numpy as np

    tr, va = np.asarray(train, dtype=np.int64), np.asarray(valid, dtype=np.int64)
    if len(tr) < 3 or len(va) < 3:
        raise ValueError("the n-gram baselines need at least 3 tokens on each side of the split")
    out = {"uniform": math.log(vocab)}
    for order in (1, 2, 3):
        counts, contexts = _counts(tr, order, vocab), _counts(tr[:-1], order - 1, vocab) if order > 1 else None
        keys = _keys(va, order, vocab)
        seen = counts(keys)
        total = contexts(_keys(va[:-1], order - 1, vocab)[: len(keys)]) if contexts is not None else len(tr)
        p = (seen + alpha) / (np.asarray(total, dtype=np.float64) + alpha * vocab)
        out[("unigram", "bigram", "trigram")[order - 1]] = float(-np.log(p).mean())
    return out


def _keys(ids: Any, order: int, vocab: int) -> Any:
    """Each window of `order` tokens as one integer (base `vocab`)."""
    keys = ids[: len(ids) - order + 1].copy()
    for k in range(1, order):
        keys = keys * vocab + ids[k: len(ids) - order + 1 + k]
    return keys


def _counts(ids: Any, order: int, vocab: int) -> Any:
    """A function from window keys to how often each window occurs in `ids`."""
    import numpy as np

    keys = _keys(ids, order, vocab)
    found, counts = np.unique(keys, return_counts=True)

    def lookup(query: Any) -> Any:
        where = np.clip(np.searchsorted(found, query), 0, len(found) - 1)
        return np.where(found[where] == query, counts[where], 0).astype(np.float64)

    return lookup
