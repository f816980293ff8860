"""The language-model problem: a text tokenized once, its training split cut into random windows of --block-size
tokens drawn by the run's generator (an "epoch" is --eval-every optimizer steps), validation on a fixed set of
windows every epoch and on the whole validation split at the end, beside the n-gram baselines counted on the same
split. Models map token ids `LongTensor[B, T]` to next-token logits `[B, T, V]`; every loss sees them flattened
to `(B·T, V)` and `(B·T,)`, as a classifier's loss sees rows."""

from __future__ import annotations

import math
from typing import Any, Iterator, Optional

import torch

from losslab.components.lm_models import LMShape, build_lm
from losslab.components.losses import build_loss, wants_log_softmax
from losslab.components.models import build_user_model, is_user_model, load_user_model
from losslab.config.lm import LMConfig
from losslab.config.parts import LossConfig
from losslab.engine.loop import resolve_device, use_threads
from losslab.engine.problems import LossFn, Problem, backward_reaches, check_loss_output, checked_loss
from losslab.engine.sequences import evaluation_windows, windows
from losslab.errors import USER_ERRORS, ConfigError, describe

EVAL_CHUNK = 64  # windows per forward pass when evaluating


class Windows:
    """The training split as a source of batches: each epoch `steps` batches of `batch` random windows (inputs
    and the same windows shifted by one as targets), drawn from the run's generator as nanoGPT's get_batch draws
    them. Its length is the windows of an epoch, so a plan cuts it into `steps` batches."""

    streamed = False

    def __init__(self, ids: torch.Tensor, block: int, steps: int, batch: int):
        self.ids, self.block, self.steps, self.batch = ids, block, steps, batch
        self.offsets = torch.arange(block, device=ids.device)

    def __len__(self) -> int:
        return self.steps * self.batch

    def rebatched(self, batch: int) -> "Windows":
        """The same text in batches of `batch` windows (a run that overrides the batch size)."""
        return Windows(self.ids, self.block, self.steps, batch)

    def draw(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return windows(self.ids, self.block, batch, generator)

    def epoch(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps):
            yield self.draw(batch_size, generator)

    def head(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`rows` windows from the start of the text, one after another (the checks' and the probes' batch)."""
        starts = torch.arange(min(rows, (len(self.ids) - 1) // self.block or 1), device=self.ids.device) * self.block
        index = starts[:, None] + self.offsets
        return self.ids[index], self.ids[index + 1]



class flattened:  # noqa: N801  (used as a function: flattened(fn))
    """A classification loss on next-token logits: (B, T, V) and (B, T) seen as B·T rows (a class, so worker
    processes receive it with the problem)."""

    def __init__(self, fn: LossFn):
        self.fn = fn

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(out.reshape(-1, out.shape[-1]), target.reshape(-1))


class LMProblem(Problem):
    task = "language-model"
    has_validation = True
    stack_by_timing = True  # (one large forward pass per step: stacking gains on some machines, not on others)

    def __init__(self, cfg: LMConfig, text: Any = None):
        from losslab.engine.lm_data import load_text

        super().__init__()
        self.cfg, self.train_cfg, self.loss_cfg = cfg, cfg.train, cfg.loss
        self.device = resolve_device(cfg.train.device)
        use_threads(cfg.train.threads)
        self.data = text if text is not None else load_text(cfg.data)
        self.vocab = self.data.vocab_size
        self.block = cfg.data.block_size
        ids = self.data.train_ids.to(self.device)
        self.valid_ids = self.data.valid_ids.to(self.device)
        if len(ids) <= self.block + 1:
            raise ConfigError("--block-size", f"the training split has {len(ids):,} tokens: too few for windows of "
                              f"{self.block} (lower --block-size or give a longer text)")
        batch = cfg.train.batch_size or 1
        self.source = Windows(ids, self.block, cfg.data.eval_every, batch)
        x_val, y_val = evaluation_windows(self.valid_ids, self.block, cfg.data.eval_batches * batch)
        self.x_val, self.y_val = x_val, y_val
        self.x, self.y = self.source.head(len(x_val))  # fixed training windows: what landscape evaluates
        self.user_model = cfg.model.name if is_user_model(cfg.model.name) else None
        self.model_factory = load_user_model(self.user_model) if self.user_model is not None else None
        self.baselines = self.data.baselines()
        self.loss_fn = self._build_loss(cfg.loss)
        first = self.new_model(0)
        x, y = self.source.head(min(batch, 8))
        if self.user_model is not None:
            self.no_gradient = check_lm_model(self.user_model, first, x, y, self.loss_fn, self.vocab)
        check_loss_output(self.loss_fn, first, x, y)

    def shape(self) -> LMShape:
        m = self.cfg.model
        return LMShape(vocab=self.vocab, block_size=self.block, embed=m.embed, heads=m.heads, layers=m.layers,
                       hidden=m.hidden, dropout=m.dropout)

    def _build_loss(self, cfg: LossConfig) -> LossFn:
        fn = flattened(build_loss(cfg, None, classes=self.vocab))
        z = getattr(cfg, "z_loss", 0.0)
        return checked_loss(cfg, ZLoss(fn, z) if z else fn, self)

    def new_model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)  # initial weights
        if self.model_factory is not None:
            model = build_user_model(self.cfg.model.name, (self.block,), self.vocab, self.model_factory,
                                     also={"vocab_size": self.vocab, "block_size": self.block})
        else:
            model = build_lm(self.cfg.model.name, self.shape())
        if wants_log_softmax(self.cfg.loss.name):
            model = torch.nn.Sequential(model, torch.nn.LogSoftmax(dim=-1))
        return model.to(self.device)

    def evaluate(self, model: torch.nn.Module, loss_fn: Optional[LossFn] = None) -> dict[str, float]:
        """The mean loss per token and the next-token accuracy on the fixed validation windows."""
        loss, _, correct = self._measure(model, loss_fn or self.loss_fn, self.x_val, self.y_val)
        return {"valid_loss": loss, "valid_acc": correct}

    def _measure(self, model: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[float, float, float]:
        """Mean loss per token, cross-entropy in nats per token and next-token accuracy over windows (x, y)."""
        total = nll = correct = 0.0
        for i in range(0, len(x), EVAL_CHUNK):
            xb, yb = x[i:i + EVAL_CHUNK], y[i:i + EVAL_CHUNK]
            out = model(xb)
            total += float(loss_fn(out, yb)) * yb.numel()
            nll += float(flattened(log_prob_nll)(out, yb)) * yb.numel()
            correct += float((out.argmax(dim=-1) == yb).sum())
        return total / y.numel(), nll / y.numel(), correct / y.numel()

    def split_windows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole validation split in consecutive windows of --block-size (the last partial one dropped)."""
        count = (len(self.valid_ids) - 1) // self.block
        index = (torch.arange(count, device=self.device) * self.block)[:, None] + torch.arange(self.block,
                                                                                              device=self.device)
        return self.valid_ids[index], self.valid_ids[index + 1]

    def final_metrics(self, model: torch.nn.Module, loss_fn: Optional[LossFn] = None) -> dict[str, Any]:
        """On the whole validation split: the training loss's value, the cross-entropy in nats per token (the
        same for every training loss), bits per character, perplexity and next-token accuracy."""
        model.eval()
        x, y = self.split_windows()
        with torch.no_grad():
            loss, nll, accuracy = self._measure(model, loss_fn or self.loss_fn, x, y)
        chars = self.data.chars_per_token
        return {"final_loss": loss, "valid_loss": loss, "nll": nll, "perplexity": math.exp(min(nll, 700.0)),
                "bits_per_char": nll / math.log(2) / chars, "chars_per_token": chars, "accuracy": accuracy,
                "tokens_evaluated": int(y.numel()),
                "baselines": dict(self.baselines)}


class ZLoss:
    """A next-token loss plus `coef` · mean(logsumexp(logits)²) over the positions (PaLM's z-loss, which pulls the
    softmax's normaliser towards 1)."""

    def __init__(self, fn: LossFn, coef: float):
        self.fn, self.coef = fn, coef

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(out, target) + self.coef * torch.logsumexp(out, dim=-1).pow(2).mean()


def log_prob_nll(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy in nats of logits (or log-probabilities: log_softmax leaves them as they are)."""
    return torch.nn.functional.nll_loss(torch.log_softmax(out.double(), dim=-1), target)


def check_lm_model(spec: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                   vocab: int) -> list[str]:
    """A user's language model on a real batch of token ids before training: logits (B, T, V), finite, and the
    loss's backward runs through it. Returns the parameters the gradient does not reach."""
    want = (*x.shape, vocab)
    with torch.enable_grad():
        try:
            out = model(x)
        except USER_ERRORS as exc:
            raise ConfigError("--model", f"{spec} fails on a batch of token ids (LongTensor of shape "
                              f"{tuple(x.shape)}): {describe(exc)}") from None
        if not isinstance(out, torch.Tensor):
            raise ConfigError("--model", f"{spec} returns {type(out).__name__}, not a tensor of logits")
        if tuple(out.shape) != want:
            raise ConfigError("--model", f"{spec} returns shape {tuple(out.shape)} for token ids of shape "
                              f"{tuple(x.shape)}; a language model returns next-token logits (batch, time, "
                              f"vocabulary): {want}")
    return backward_reaches(spec, model, out, y, loss_fn)
