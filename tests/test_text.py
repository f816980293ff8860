"""Text for language models (issue 34, first part): the embedded tiny Shakespeare, the split, the tokenizers and
the n-gram baselines — each against a reference written here (hashlib, collections.Counter)."""

from __future__ import annotations

import collections
import gzip
import hashlib
import math
from pathlib import Path

import pytest

from losslab.components.text import (
    ByteTokenizer,
    CharTokenizer,
    ngram_baselines,
    read_text,
    split,
    tiny_shakespeare,
)
from losslab.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt.gz"


def counted(train: str, valid: str, alpha: float) -> dict[str, float]:
    """The baselines by counting characters with Counter, add-α smoothed, contexts inside the validation text."""
    vocab = sorted(set(train))
    v = len(vocab)
    uni = collections.Counter(train)
    bi, bi_ctx = collections.Counter(zip(train, train[1:])), collections.Counter(train[:-1])
    tri, tri_ctx = collections.Counter(zip(train, train[1:], train[2:])), collections.Counter(zip(train, train[1:-1]))

    def mean(logs: list[float]) -> float:
        return -sum(logs) / len(logs)

    return {"uniform": math.log(v),
            "unigram": mean([math.log((uni[c] + alpha) / (len(train) + alpha * v)) for c in valid]),
            "bigram": mean([math.log((bi[(a, b)] + alpha) / (bi_ctx[a] + alpha * v))
                            for a, b in zip(valid, valid[1:])]),
            "trigram": mean([math.log((tri[(a, b, c)] + alpha) / (tri_ctx[(a, b)] + alpha * v))
                             for a, b, c in zip(valid, valid[1:], valid[2:])])}


def test_the_embedded_text_is_tiny_shakespeare():
    text = tiny_shakespeare()
    assert len(text) == 1_115_394
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    if SHARED.exists():  # the workplace's copy, where it is mounted
        assert gzip.decompress(SHARED.read_bytes()).decode() == text
    train, valid = split(text)
    assert (len(train), len(valid)) == (1_003_854, 111_540) and train + valid == text


def test_baselines_equal_counting_on_a_small_text_and_the_default():
    train, valid = split("the cat sat on the mat; the rat ate the hat. " * 40 + "a rat sat on the cat")
    tok = CharTokenizer.fit(train)
    for alpha in (0.1, 1.0):
        ours = ngram_baselines(tok.encode(train), tok.encode(valid), tok.vocab_size, alpha)
        assert ours == pytest.approx(counted(train, valid, alpha), rel=1e-12)
    train, valid = split(tiny_shakespeare())
    tok = CharTokenizer.fit(train)
    ladder = ngram_baselines(tok.encode(train), tok.encode(valid), tok.vocab_size)
    assert tok.vocab_size == 65
    assert [round(ladder[k], 3) for k in ("uniform", "unigram")] == [4.174, 3.347]
    assert [round(ladder[k], 2) for k in ("bigram", "trigram")] == [2.48, 2.05]


def test_tokenizers_round_trip_and_name_an_unknown_character():
    tok = CharTokenizer.fit("hello world")
    assert tok.decode(tok.encode("world hello")) == "world hello"
    with pytest.raises(ConfigError, match="'Z'") as err:
        tok.encode("hello Zed", option="--prompt")
    assert err.value.option == "--prompt"
    byte = ByteTokenizer()
    assert byte.decode(byte.encode("café ☕")) == "café ☕" and max(byte.encode("☕")) < 256


@pytest.mark.parametrize("content, words", [(b"", "empty"), (b"  \n", "empty"), (b"ab\x00cd", "binary"),
                                            (b"caf\xe9", "not UTF-8")])
def test_a_text_file_that_cannot_train_is_one_line_naming_the_option(tmp_path, content, words):
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=words) as err:
        read_text(str(path))
    assert err.value.option == "--data"
    with pytest.raises(ConfigError, match="cannot read"):
        read_text(str(tmp_path / "missing.txt"))
    (tmp_path / "ok.txt").write_text("To be, or not to be", encoding="utf-8")
    assert read_text(str(tmp_path / "ok.txt")) == "To be, or not to be"


def test_a_bpe_vocabulary_file_in_tiktokens_format(tmp_path):
    """A small byte-pair vocabulary written here in tiktoken's file format (base64 token, rank): every byte, then
    merges; the text round-trips and the merges are used."""
    import base64

    from losslab.components.text import BPETokenizer

    tokens = [bytes([b]) for b in range(256)] + [b"th", b"the", b" the", b"at"]
    path = tmp_path / "tiny.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {rank}\n" for rank, t in enumerate(tokens)))
    tok = BPETokenizer(str(path))
    assert tok.vocab_size == 260
    ids = tok.encode("the cat at the mat")
    assert tok.decode(ids) == "the cat at the mat"
    assert 258 in ids and 259 in ids and len(ids) < len("the cat at the mat")  # " the" and "at" merged
    with pytest.raises(ConfigError) as err:
        BPETokenizer(str(tmp_path / "missing.tiktoken"))
    assert err.value.option == "--tokenizer"
