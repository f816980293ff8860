"""`losslab lm`: train a next-token language model (tiny Shakespeare by default) and report its validation loss
in nats per token, bits per character and perplexity beside the n-gram baselines of the same split, then a sample
of generated text."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from losslab.commands.common import (
    DIAGNOSIS_CHOICES,
    Output,
    Plot,
    Where,
    check_gates,
    check_outputs,
    clipping_note,
    context,
    diagnosis_notes,
    finish,
    model_notes,
    optimizer_document,
    optimizer_notes,
    sharpness_plots,
)
from losslab.config.lm import LMConfig
from losslab.engine.events import BestEpoch, Consumer, Dispatcher
from losslab.engine.lm_problem import LMProblem
from losslab.engine.runs import RunSpec, Start, execute, run_info
from losslab.errors import ConfigError
from losslab.expect import Outcome, check_names
from losslab.outputs import dispatcher
from losslab.outputs.display import ProgressDisplay, Report, classify_columns, fmt, make_console, status_notes
from losslab.outputs.files import outcomes_document, versions

COMMAND = "lm"
PLOTS = ("curves.png",)
LADDER = ("uniform", "unigram", "bigram", "trigram")


@dataclass
class LMResult:
    config: LMConfig
    status: str
    records: list[dict[str, Any]]
    final: dict[str, Any]  # the final metrics on the whole validation split (LMProblem.final_metrics)
    best_epoch: Optional[int]
    elapsed_s: float
    device: str
    data_source: str
    parameters: int
    steps: int
    tokens_per_step: int
    sample: Optional[str] = None
    prompt: str = ""
    restored_best: bool = False
    notes: list[str] = field(default_factory=list)
    optimizer: dict[str, Any] = field(default_factory=dict)
    diverged_epoch: Optional[int] = None
    versions: dict[str, str] = field(default_factory=dict)
    diagnosis: list[Any] = field(default_factory=list)
    error: Optional[str] = None
    model: Any = None

    @property
    def epochs_run(self) -> int:
        return len(self.records)

    def metrics(self) -> dict[str, Any]:
        """The numbers --expect checks and gate compares."""
        last = self.records[-1] if self.records else {}
        out = {k: v for k, v in self.final.items() if not isinstance(v, dict)}
        return {**out, "best_epoch": self.best_epoch, "epochs_run": len(self.records), "steps": self.steps,
                "elapsed_s": self.elapsed_s, "train_loss": last.get("train_loss"),
                "diagnosis": [f.code for f in self.diagnosis]}


METRIC_NAMES = ("final_loss", "valid_loss", "nll", "perplexity", "bits_per_char", "accuracy", "tokens_evaluated",
                "best_epoch", "epochs_run", "steps", "elapsed_s", "train_loss", "diagnosis")


class Snapshots(Consumer):
    """With --save: the state at the end of each epoch (weights, optimizer, batch-order generator, global RNG),
    so that a run stopped by Ctrl-C mid-epoch saves its last whole epoch, and --resume goes on from there as if it
    had never stopped."""

    def __init__(self, model: Any, optimizer: Any, generator: Any, steps_per_epoch: int):
        self.model, self.optimizer, self.generator, self.steps_per_epoch = model, optimizer, generator, steps_per_epoch
        self.epoch = 0
        self.records: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}

    def on_epoch_end(self, run: Any, record: dict[str, Any]) -> None:
        import copy

        import torch

        self.epoch = record["epoch"]
        self.records.append(dict(record))
        self.state = {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                      "optimizer": copy.deepcopy(self.optimizer.state_dict()), "generator": self.generator.get_state(),
                      "rng": torch.get_rng_state(), "schedule": None, "cuda_rng": None, "sharpness": None}

    def resume_entry(self, elapsed_s: float) -> dict[str, Any]:
        """What --resume reads back (engine.runs.Paused's fields)."""
        steps = self.epoch * self.steps_per_epoch
        return {"epoch": self.epoch, "records": self.records, "elapsed_s": elapsed_s, "state": self.state,
                "steps": steps, "grad_evals": steps}


def run(cfg: LMConfig, events: Consumer = Consumer(), problem: Optional[LMProblem] = None) -> LMResult:
    """Train a language model (or go on from --resume); measure it on the validation split; generate a sample."""
    from losslab.components.optimizers import build_optimizer
    from losslab.engine.loop import batch_generator

    cfg = cfg.resolved()
    problem = problem or LMProblem(cfg)
    prompt = problem.data.encode_prompt(cfg.sample.prompt)
    spec = RunSpec("run", cfg.optim, cfg.train.seed)
    model = problem.new_model(cfg.train.seed)
    paused = resumed(cfg, problem) if cfg.resume else None
    start = paused.start(model, spec) if paused is not None else Start(model, build_optimizer(model, cfg.optim),
                                                                        batch_generator(cfg.train.seed))
    optimizer = start.optimizer
    snapshots = Snapshots(model, optimizer, start.generator, cfg.data.eval_every)
    if paused is not None:
        snapshots.epoch, snapshots.records, snapshots.state = paused.epoch, list(paused.records), paused.state
    best = BestEpoch(model, cfg.patience)
    restored = False

    def restore_best(fitted: Any) -> None:
        nonlocal restored
        if cfg.patience is not None and best.best_state is not None and fitted.status != "interrupted":
            model.load_state_dict(best.best_state)
            restored = best.best_epoch != (fitted.records[-1]["epoch"] if fitted.records else None)

    events = (events if isinstance(events, Dispatcher) else Dispatcher([events])).preceded_by(best)
    if cfg.save is not None:
        events = events.preceded_by(snapshots)
    result = execute(problem, spec, events, info=run_info(problem, spec, first_epoch=start.first_epoch),
                     start=start, single=True, after_fit=restore_best)
    sample = None
    if cfg.sample.tokens and result.status in ("ok", "interrupted") and result.records:
        sample = generate_text(problem, model, prompt, cfg)
    if cfg.save is not None and result.status != "diverged" and snapshots.epoch:
        save(cfg.save, problem, model if result.status == "ok" else None, snapshots.resume_entry(result.elapsed_s))
    return LMResult(
        config=cfg, status=result.status, records=result.records, final=result.metrics,
        best_epoch=best.best_epoch, elapsed_s=result.elapsed_s, device=str(problem.device),
        data_source=problem.data.source, parameters=sum(p.numel() for p in model.parameters()),
        steps=result.optimizer_steps or 0, tokens_per_step=(cfg.train.batch_size or 1) * problem.block,
        sample=sample, prompt=problem.data.decode(prompt.tolist()), restored_best=restored, notes=model_notes(problem),
        optimizer=optimizer_document(cfg.optim, model, result), diverged_epoch=result.diverged_epoch,
        versions=versions(), diagnosis=result.diagnosis, error=result.error, model=model)


def generate_text(problem: LMProblem, model: Any, prompt: Any, cfg: LMConfig) -> str:
    from losslab.engine.sequences import generate

    new = generate(model, prompt.to(problem.device), cfg.sample.tokens, problem.block,
                   temperature=cfg.sample.temperature, top_k=cfg.sample.top_k, seed=cfg.train.seed)
    return problem.data.decode(new.tolist())


def save(path: str, problem: LMProblem, model: Any, resume: dict[str, Any]) -> None:
    """A checkpoint `losslab generate` continues a text from and `--resume` goes on training from: the weights
    (the final ones, or the last whole epoch's of an interrupted run) and the training state of that epoch."""
    from losslab.commands.classify import save_checkpoint
    from losslab.engine.checkpoints import FORMAT, model_entry
    from losslab.version import __version__

    weights = model.state_dict() if model is not None else resume["state"]["model"]
    save_checkpoint(path, {"format": FORMAT, "losslab": __version__, "epoch": resume["epoch"], **model_entry(problem),
                           "config": problem.cfg.to_dict(), "state_dict": weights, "resume": resume})


RESUME_KEYS = {"input_shape": ("block size", "--block-size"), "outputs": ("vocabulary size", "--data"),
               "vocabulary": ("vocabulary", "--data"), "tokenizer": ("tokenizer", "--tokenizer"),
               "model": ("model", "--model"), "shape": ("model sizes", "--model"), "log_softmax": ("loss", "--loss")}


def resumed(cfg: LMConfig, problem: LMProblem) -> Any:
    """The paused run a --resume checkpoint holds, checked against this run (model, vocabulary, optimizer)."""
    from losslab.engine.checkpoints import model_entry, read
    from losslab.engine.runs import Paused

    assert cfg.resume is not None
    ckpt = read(cfg.resume, "--resume")
    entry, ours = {k: ckpt.get(k) for k in model_entry(problem)}, model_entry(problem)
    differ = next((k for k in ours if entry[k] != ours[k]), None)
    if differ is not None:
        what = RESUME_KEYS.get(differ, ("its " + differ, "--resume"))
        raise ConfigError(what[1], f"differs from the --resume checkpoint's: {what[0]} {entry[differ]!r} there, "
                          f"{ours[differ]!r} here (give the data and model options it was trained with)")
    saved = ckpt.get("resume")
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        raise ConfigError("--resume", f"{cfg.resume} holds no training state to go on from (written by an older "
                          "losslab)")
    optim = (ckpt.get("config") or {}).get("optim", {}).get("name")
    if optim != cfg.optim.name:
        raise ConfigError("--resume", f"the checkpoint trained with {optim}, this run with {cfg.optim.name}: its "
                          "optimizer state would not fit (give the same --optim)")
    if saved["epoch"] >= (cfg.train.epochs or 0):
        raise ConfigError("--resume", f"the checkpoint is at epoch {saved['epoch']}; --epochs {cfg.train.epochs} "
                          "leaves nothing to train (--epochs is the total)")
    return Paused(saved["epoch"], saved["records"], saved["elapsed_s"], saved["state"], saved["steps"],
                  saved["grad_evals"])


# --- outputs -------------------------------------------------------------------------------------

def document(result: LMResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab lm`."""
    last = result.records[-1] if result.records else {}
    return {"command": COMMAND, "status": result.status, "config": result.config.to_dict(), **result.final,
            "train_loss": last.get("train_loss"), "epochs_run": len(result.records), "steps": result.steps,
            "tokens_per_step": result.tokens_per_step, "best_epoch": result.best_epoch,
            "restored_best": result.restored_best, "diverged_epoch": result.diverged_epoch,
            "parameters": result.parameters, "data": result.data_source, "prompt": result.prompt,
            "sample": result.sample, "device": result.device, "elapsed_s": result.elapsed_s, "notes": result.notes,
            "optimizer": result.optimizer, "error": result.error,
            "diagnosis": [f.to_dict() for f in result.diagnosis], "expectations": outcomes_document(outcomes or []),
            "versions": result.versions}


def ladder_rows(metrics: dict[str, Any], chars_per_token: float) -> list[list[str]]:
    """The model's validation cross-entropy beside the n-gram baselines, lowest last."""
    baselines = metrics.get("baselines") or {}
    rows = [[name, fmt(value), fmt(value / math.log(2) / chars_per_token, ".3f"), fmt(math.exp(value), ".2f")]
            for name, value in baselines.items()]
    nll = metrics.get("nll")
    if nll is not None:
        rows.append(["this model", fmt(nll), fmt(metrics["bits_per_char"], ".3f"), fmt(metrics["perplexity"], ".2f")])
    return rows


def verdict(metrics: dict[str, Any]) -> str:
    """Which baselines the model beats, in words."""
    nll, baselines = metrics.get("nll"), metrics.get("baselines") or {}
    if nll is None or not math.isfinite(nll) or not baselines:
        return "no validation loss to compare with the baselines"
    beaten = [name for name in LADDER if name in baselines and nll < baselines[name]]
    if "trigram" in beaten:
        return "below the trigram baseline: the model uses more than two tokens of context"
    if not beaten:
        return "above the uniform baseline: the model predicts worse than a guess over the vocabulary"
    return (f"below the {beaten[-1]} baseline but above the "
            f"{next(n for n in LADDER if n in baselines and n not in beaten)}'s: train longer or larger")


def report(result: LMResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    cfg, m = result.config, result.final
    title = (f"losslab lm: {result.status} — {cfg.model.name} ({result.parameters:,} parameters), {cfg.loss.name}, "
             f"{cfg.optim.name} lr {fmt(cfg.optim.lr, 'g')}: {result.steps:,} steps in {result.elapsed_s:.1f} s on "
             f"{result.device}")
    notes = [verdict(m), f"data: {result.data_source}",
             f"validation: {m.get('tokens_evaluated', 0):,} tokens in windows of {cfg.data.block_size}; "
             f"next-token accuracy {fmt(m.get('accuracy'), '.4f')}"]
    notes += list(result.notes) + optimizer_notes(result.optimizer) + status_notes(result)
    notes += clipping_note(result.records, cfg.train) + diagnosis_notes(result.diagnosis)
    notes += [o.describe() for o in outcomes]
    reports = [Report(title, ["validation (whole split)", "nats/token", "bits/char", "perplexity"],
                      ladder_rows(m, m.get("chars_per_token", 1.0)), notes)]
    if result.sample is not None:
        shown = result.prompt + result.sample
        reports.append(Report(f"sample ({cfg.sample.tokens} tokens, temperature {cfg.sample.temperature:g}"
                              f"{f', top-k {cfg.sample.top_k}' if cfg.sample.top_k else ''}, seed {cfg.train.seed})",
                              [], [], shown.strip("\n").splitlines()))
    return reports


def plots(result: LMResult) -> list[Plot]:
    cfg = result.config

    def curves(path: Any) -> None:
        from losslab.outputs.plots import classification_curves

        classification_curves(result.records, path, title=f"lm: {cfg.model.name}, {cfg.optim.name} lr "
                              f"{cfg.optim.lr:g}", best_epoch=result.best_epoch)

    drawers: list[tuple[str, Callable[[Any], None]]] = [("curves.png", curves)] if result.records else []
    return drawers + sharpness_plots(result.records, f"sharpness: lm, {cfg.optim.name}, lr {cfg.optim.lr:g}")


def terminal_curves(result: LMResult) -> str:
    from losslab.outputs.terminal_plot import curves

    steps = [float(r["epoch"] * result.config.data.eval_every) for r in result.records]
    return curves([("train", steps, [r["train_loss"] for r in result.records]),
                   ("valid", steps, [r.get("valid_loss") for r in result.records])], title="loss", xlabel="step")


def experiment(cfg: LMConfig, *, json_out: bool = False, quiet: bool = False) -> tuple[Output, Where]:
    """The command's checks, training and results, up to its outputs (what the CLI and the Python API share)."""
    from losslab.engine.sequences import check_sampling

    cfg = cfg.resolved()
    check_outputs(cfg, PLOTS)
    check_names(cfg.gates.expect, list(METRIC_NAMES), DIAGNOSIS_CHOICES)
    problem = LMProblem(cfg)
    check_sampling(cfg.sample.temperature, cfg.sample.top_k, problem.vocab)
    problem.data.encode_prompt(cfg.sample.prompt)  # a character the vocabulary lacks: refused before training
    console = make_console(stderr=json_out)
    progress = ProgressDisplay(console, classify_columns(), quiet=quiet, max_rows=20)
    events = dispatcher(context(COMMAND, cfg, json_out, quiet), [progress])
    result = run(cfg, events, problem)
    outcomes = check_gates(cfg.gates, result.status, result.metrics())
    return (Output(document(result, outcomes), report(result, outcomes), result.records, outcomes, result.status,
                   plots(result), lambda: terminal_curves(result), result=result),
            Where(console, json_out, quiet, cfg.out, cfg.plot, events))


def main(cfg: LMConfig, *, json_out: bool, quiet: bool) -> int:
    return finish(*experiment(cfg, json_out=json_out, quiet=quiet))
