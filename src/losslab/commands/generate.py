"""`losslab generate --checkpoint FILE --prompt TEXT`: a language model saved by `losslab lm --save` continues a
text — `--tokens` new tokens at `--temperature` (0: greedy), among the `--top-k` most likely, drawn by a generator
seeded with `--seed` (the same command gives the same text), decoded with the tokenizer it was trained with."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from losslab.errors import ConfigError, ExitCode

COMMAND = "generate"


@dataclass(frozen=True)
class GenerateConfig:
    checkpoint: str
    prompt: Optional[str] = None  # None: a new line
    tokens: int = 200
    temperature: float = 0.8
    top_k: Optional[int] = None
    seed: int = 0

    def __post_init__(self) -> None:
        from losslab.config.lm import SampleConfig

        if not Path(self.checkpoint).expanduser().is_file():
            raise ConfigError("--checkpoint", f"no such file: {self.checkpoint}")
        if self.prompt == "":
            raise ConfigError("--prompt", "is empty: give some text to continue")
        SampleConfig(self.tokens, self.temperature, self.top_k, self.prompt)  # (its checks, named as the options)


def tokenizer_of(ckpt: dict[str, Any]) -> Any:
    """The tokenizer a language model was trained with, as its checkpoint records it."""
    from losslab.components.text import BPETokenizer, ByteTokenizer, CharTokenizer

    name = ckpt.get("tokenizer")
    if name == "char" and isinstance(ckpt.get("vocabulary"), str):
        return CharTokenizer(ckpt["vocabulary"])
    if name == "byte":
        return ByteTokenizer()
    if isinstance(name, str) and name not in ("char", "byte"):
        return BPETokenizer(name, "--checkpoint")
    raise ConfigError("--prompt", "this model was trained on token ids without a tokenizer: it has no text to "
                      "continue")


def continue_text(cfg: GenerateConfig, ckpt: dict[str, Any], model: Any) -> str:
    """The prompt and the `tokens` the saved model samples after it."""
    import torch

    from losslab.engine.sequences import check_sampling, generate

    if ckpt.get("task") != "language-model":
        raise ConfigError("--checkpoint", f"{cfg.checkpoint} holds a {ckpt.get('task')} model, not a language model "
                          "(losslab predict --data applies it)")
    tokenizer = tokenizer_of(ckpt)
    check_sampling(cfg.temperature, cfg.top_k, int(ckpt["outputs"]))
    prompt = cfg.prompt if cfg.prompt is not None else "\n"
    ids = torch.tensor(tokenizer.encode(prompt, "--prompt"), dtype=torch.int64)
    new = generate(model, ids, cfg.tokens, int(ckpt["input_shape"][0]), temperature=cfg.temperature,
                   top_k=cfg.top_k, seed=cfg.seed)
    return prompt + tokenizer.decode(new.tolist())


def main(cfg: GenerateConfig, *, json_out: bool) -> int:
    from losslab.commands.common import context, emit, end_command
    from losslab.engine.checkpoints import read, rebuild
    from losslab.interrupt import critical
    from losslab.outputs.files import versions
    from losslab.outputs.sinks import dispatcher

    events = dispatcher(context(COMMAND, cfg, json_out))
    ckpt = read(cfg.checkpoint)
    text = continue_text(cfg, ckpt, rebuild(ckpt))
    doc = {"command": COMMAND, "status": "ok", "config": asdict(cfg), "model": ckpt["model"], "text": text,
           "versions": versions()}
    if not json_out:
        with critical():
            emit(text + "\n", sys.stdout)
    end_command(events, COMMAND, "ok", doc, json_out)
    return int(ExitCode.OK)
