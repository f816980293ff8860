"""Language models by name (`losslab lm --model NAME`): each maps token ids `LongTensor[B, T]` to next-token
logits `[B, T, V]`. `bigram` is a logits table (trained to convergence it lands on the counted bigram's
cross-entropy); `rnn`, `gru`, `lstm` are recurrent stacks; `gpt` is a decoder-only transformer in nanoGPT's shape
(token and position embeddings, pre-norm blocks of causal self-attention through
`torch.nn.functional.scaled_dot_product_attention` and a 4x MLP, a final LayerNorm, the head tied to the token
embedding, GPT-2's initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from losslab.components.registry import Registry
from losslab.errors import ConfigError

LM_MODELS: Registry[Callable[..., Any]] = Registry("language model", "--model")


@dataclass(frozen=True)
class LMShape:
    """The sizes a language model is built with (`--hidden --layers --heads --embed --block-size --dropout`)."""

    vocab: int
    block_size: int = 64
    embed: int = 128
    heads: int = 4
    layers: int = 4
    hidden: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for option, value in (("--block-size", self.block_size), ("--embed", self.embed), ("--heads", self.heads),
                              ("--layers", self.layers), ("--hidden", self.hidden)):
            if value < 1:
                raise ConfigError(option, f"must be at least 1 (got {value})")
        if self.embed % self.heads:
            raise ConfigError("--heads", f"{self.heads} heads do not divide --embed {self.embed}: each head takes "
                              "embed/heads features")
        if not 0 <= self.dropout < 1:
            raise ConfigError("--dropout", f"must be in [0, 1) (got {self.dropout})")


@LM_MODELS.register("bigram", "a V x V table of next-token logits: the counted bigram, learned")
def bigram(shape: LMShape) -> Any:
    from torch import nn

    class Bigram(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Embedding(shape.vocab, shape.vocab)

        def forward(self, idx: Any) -> Any:
            return self.table(idx)

    return Bigram()


def _recurrent(kind: str) -> Callable[[LMShape], Any]:
    def build(shape: LMShape) -> Any:
        from torch import nn

        class Recurrent(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(shape.vocab, shape.hidden)
                self.rnn = getattr(nn, kind)(shape.hidden, shape.hidden, num_layers=shape.layers, batch_first=True,
                                             dropout=shape.dropout if shape.layers > 1 else 0.0)
                self.head = nn.Linear(shape.hidden, shape.vocab)

            def forward(self, idx: Any) -> Any:
                out, _ = self.rnn(self.embed(idx))
                return self.head(out)

        Recurrent.__name__ = Recurrent.__qualname__ = kind
        return Recurrent()

    build.__name__ = kind.lower()
    return build


for _kind, _text in (("RNN", "an Elman RNN (tanh)"), ("GRU", "a GRU"), ("LSTM", "an LSTM")):
    LM_MODELS.register(_kind.lower(), f"Embedding -> {_text} of --layers x --hidden -> Linear head")(
        _recurrent(_kind))


@LM_MODELS.register("gpt", "a decoder-only transformer (nanoGPT's shape): --layers blocks of --heads-head causal "
                    "attention and a 4x MLP over --embed features, context --block-size, head tied to the embedding")
def gpt(shape: LMShape) -> Any:
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(shape.embed), nn.LayerNorm(shape.embed)
            self.qkv = nn.Linear(shape.embed, 3 * shape.embed)
            self.proj = nn.Linear(shape.embed, shape.embed)
            self.mlp = nn.Sequential(nn.Linear(shape.embed, 4 * shape.embed), nn.GELU(),
                                     nn.Linear(4 * shape.embed, shape.embed), nn.Dropout(shape.dropout))
            self.drop = nn.Dropout(shape.dropout)

        def forward(self, x: Any) -> Any:
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, shape.heads, c // shape.heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=shape.dropout if self.training else 0.0,
                                               is_causal=True)
            x = x + self.drop(self.proj(y.transpose(1, 2).contiguous().view(b, t, c)))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(shape.vocab, shape.embed)
            self.wpe = nn.Embedding(shape.block_size, shape.embed)
            self.drop = nn.Dropout(shape.dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(shape.layers))
            self.ln_f = nn.LayerNorm(shape.embed)
            self.head = nn.Linear(shape.embed, shape.vocab, bias=False)
            self.head.weight = self.wte.weight  # tied, as nanoGPT and GPT-2
            self.apply(self._init)  # GPT-2's initialisation, as nanoGPT's: N(0, 0.02), zero biases, ...
            for block in self.blocks:  # ... and the residual projections scaled by 1/sqrt(2 layers)
                torch.nn.init.normal_(block.proj.weight, std=0.02 / (2 * shape.layers) ** 0.5)
                torch.nn.init.normal_(block.mlp[2].weight, std=0.02 / (2 * shape.layers) ** 0.5)

        @staticmethod
        def _init(module: Any) -> None:
            if isinstance(module, (nn.Linear, nn.Embedding)):
                torch.nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                torch.nn.init.zeros_(module.bias)

        def forward(self, idx: Any) -> Any:
            t = idx.shape[1]
            if t > shape.block_size:
                raise ValueError(f"a sequence of {t} tokens is longer than the model's --block-size "
                                 f"{shape.block_size}")
            x = self.drop(self.wte(idx) + self.wpe(torch.arange(t, device=idx.device)))
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

    return GPT()


def build_lm(name: str, shape: LMShape) -> Any:
    return LM_MODELS.lookup(name).factory(shape)
