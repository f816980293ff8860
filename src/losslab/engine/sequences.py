"""Next-token data and text generation for language models: random windows of `block` tokens drawn by a generator
seeded with the run's seed (inputs and the same windows shifted by one as targets, as nanoGPT's get_batch), a fixed
set of evaluation windows, and sampling — temperature (0: greedy, the argmax), top-k, from a prompt, seeded."""

from __future__ import annotations

from typing import Optional

import torch

from losslab.errors import ConfigError


def windows(ids: torch.Tensor, block: int, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` windows at random starts: inputs ids[s:s+block] and targets ids[s+1:s+block+1], each (batch, block)."""
    starts = torch.randint(len(ids) - block, (batch,), generator=generator)
    index = (starts[:, None] + torch.arange(block)).to(ids.device)
    return ids[index], ids[index + 1]


def evaluation_windows(ids: torch.Tensor, block: int, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed windows a model is evaluated on, the same for every run and epoch (drawn once from `seed`)."""
    if len(ids) < 2 * block:
        raise ConfigError("--block-size", f"the text has {len(ids):,} tokens: fewer than two blocks of {block} "
                          "(lower --block-size or give a longer text)")
    return windows(ids, block, count, torch.Generator().manual_seed(seed))


def check_sampling(temperature: float, top_k: Optional[int], vocab: int) -> None:
    if not temperature >= 0:
        raise ConfigError("--temperature", f"must be 0 (greedy) or more (got {temperature})")
    if top_k is not None and not 1 <= top_k <= vocab:
        raise ConfigError("--top-k", f"must be from 1 to the vocabulary's {vocab} (got {top_k})")


@torch.no_grad()
def generate(model: torch.nn.Module, prompt: torch.Tensor, tokens: int, block: int, *, temperature: float = 1.0,
             top_k: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    """`tokens` new tokens after `prompt` (1-D ids), each from the model's logits at the last position of the
    last `block` tokens: divided by `temperature` and sampled (0: the argmax), among the `top_k` largest when
    given; the draws come from a generator seeded with `seed`, so the same call gives the same text."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = prompt.clone()
    try:
        for _ in range(tokens):
            logits = model(out[-block:][None])[0, -1].float()
            if temperature == 0:
                nxt = logits.argmax()
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[0]
            out = torch.cat([out, nxt.view(1)])
    finally:
        model.train(was_training)
    return out[len(prompt):]
