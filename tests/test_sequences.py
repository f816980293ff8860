"""Next-token windows and generation (issue 34, third part), against hand-written references."""

from __future__ import annotations

import pytest
import torch

from losslab.components.lm_models import LMShape, build_lm
from losslab.engine.sequences import check_sampling, evaluation_windows, generate, windows
from losslab.errors import ConfigError


def test_windows_are_seeded_and_shifted_by_one():
    ids = torch.arange(100)
    x, y = windows(ids, 8, 5, torch.Generator().manual_seed(3))
    again, _ = windows(ids, 8, 5, torch.Generator().manual_seed(3))
    assert x.shape == y.shape == (5, 8) and torch.equal(x, again) and torch.equal(y, x + 1)
    starts = torch.randint(100 - 8, (5,), generator=torch.Generator().manual_seed(3))  # nanoGPT's get_batch
    assert x[:, 0].tolist() == starts.tolist()
    ex, _ = evaluation_windows(ids, 8, 4)
    assert torch.equal(ex, evaluation_windows(ids, 8, 4)[0])
    with pytest.raises(ConfigError) as err:
        evaluation_windows(torch.arange(15), 8, 4)
    assert err.value.option == "--block-size"


def test_generation_is_reproducible_greedy_at_zero_and_keeps_to_the_top_k():
    torch.manual_seed(0)
    model = build_lm("gpt", LMShape(vocab=13, block_size=8, embed=16, heads=2, layers=1))
    prompt = torch.tensor([1, 2, 3])
    a = generate(model, prompt, 20, 8, temperature=1.0, seed=5)
    assert torch.equal(a, generate(model, prompt, 20, 8, temperature=1.0, seed=5)) and len(a) == 20
    assert not torch.equal(a, generate(model, prompt, 20, 8, temperature=1.0, seed=6))
    greedy = generate(model, prompt, 10, 8, temperature=0)
    context = prompt.clone()  # the argmax, written out
    with torch.no_grad():
        for token in greedy.tolist():
            assert token == model(context[-8:][None])[0, -1].argmax().item()
            context = torch.cat([context, torch.tensor([token])])
    top2 = generate(model, prompt, 30, 8, temperature=1.0, top_k=2, seed=1)
    context = prompt.clone()
    with torch.no_grad():
        for token in top2.tolist():
            allowed = torch.topk(model(context[-8:][None])[0, -1], 2).indices.tolist()
            assert token in allowed
            context = torch.cat([context, torch.tensor([token])])


@pytest.mark.parametrize("temperature, top_k, option", [(-0.5, None, "--temperature"), (1.0, 0, "--top-k"),
                                                        (1.0, 14, "--top-k")])
def test_sampling_options_are_checked(temperature, top_k, option):
    with pytest.raises(ConfigError) as err:
        check_sampling(temperature, top_k, 13)
    assert err.value.option == option
