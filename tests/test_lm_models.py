"""The language models by name (issue 34, second part): shapes, causality, the tied head, and the bigram table
trained to convergence landing on the counted bigram's cross-entropy."""

from __future__ import annotations

import collections
import math

import pytest
import torch

from losslab.components.lm_models import LM_MODELS, LMShape, build_lm
from losslab.components.text import CharTokenizer
from losslab.errors import ConfigError


@pytest.mark.parametrize("name", LM_MODELS.names())
def test_every_model_maps_token_ids_to_next_token_logits(name):
    torch.manual_seed(0)
    model = build_lm(name, LMShape(vocab=11, block_size=16, embed=32, heads=4, layers=2, hidden=24))
    idx = torch.randint(0, 11, (3, 16))
    logits = model(idx)
    assert logits.shape == (3, 16, 11) and torch.isfinite(logits).all()
    # causal: changing the last token changes no earlier position's logits
    other = idx.clone()
    other[:, -1] = (other[:, -1] + 1) % 11
    assert torch.equal(model(other)[:, :-1], logits[:, :-1])


def test_gpt_ties_its_head_and_refuses_what_does_not_fit():
    model = build_lm("gpt", LMShape(vocab=7, block_size=8, embed=16, heads=2, layers=1))
    assert model.head.weight is model.wte.weight
    with pytest.raises(ValueError, match="block-size"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ConfigError) as err:
        LMShape(vocab=7, embed=30, heads=4)
    assert err.value.option == "--heads"
    with pytest.raises(ConfigError):
        LMShape(vocab=7, dropout=1.0)


def test_the_bigram_table_trained_to_convergence_is_the_counted_bigram():
    """Full-batch L-BFGS on every (token, next token) pair of a small text: the training cross-entropy equals the
    counted (maximum-likelihood) bigram's, -mean log(count(a, b) / count(a)), within 1e-3 nats."""
    text = "the cat sat on the mat; the rat ate the hat and the bat sat on the cat. " * 8
    tok = CharTokenizer.fit(text)
    pairs, firsts = collections.Counter(zip(text, text[1:])), collections.Counter(text[:-1])
    counted = -sum(math.log(pairs[(a, b)] / firsts[a]) for a, b in zip(text, text[1:])) / (len(text) - 1)
    ids = torch.tensor(tok.encode(text))
    torch.manual_seed(0)
    model = build_lm("bigram", LMShape(vocab=tok.vocab_size))
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(ids[None, :-1])[0], ids[1:])
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    with torch.no_grad():
        trained = torch.nn.functional.cross_entropy(model(ids[None, :-1])[0], ids[1:]).item()
    assert trained == pytest.approx(counted, abs=1e-3)
