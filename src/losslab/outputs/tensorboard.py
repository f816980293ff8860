"""`--tensorboard DIR`: TensorBoard event files written as the runs go, a consumer of the same training events as
the live display (`torch.utils.tensorboard.SummaryWriter`, which needs the `tensorboard` package only).

One run directory per run or trial, named by command and run label (`DIR/compare-optimizers/adam-lr0.01-seed0`);
scalars grouped by tag (`loss/train`, `loss/valid`, `accuracy/valid`, `lr`, `grad_norm`, `grad_norm/<layer>`,
`update_ratio/<layer>`, `param/<name>` of small models); for trials of a many-run command, `add_hparams` with
the trial's settings and final metrics in the same run directory; for the LR range test, loss and rate against
the step. Each run's file is flushed and closed when the run ends, whatever its status.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from losslab.engine.events import Consumer, RunInfo
from losslab.outputs.sinks import CONSUMERS, OutputContext

TAGS = {"train_loss": "loss/train", "valid_loss": "loss/valid", "valid_acc": "accuracy/valid", "lr": "lr",
        "grad_norm": "grad_norm", "clipped": "clipped"}
SKIP = {"epoch", "elapsed_s"}


def tag(key: str, regression: bool) -> Optional[str]:
    """The TensorBoard tag of a record key, or None for keys that are not curves; a regression record's other
    keys are the model's parameters (w, b, w_<column>)."""
    if key in TAGS:
        return TAGS[key]
    if key in SKIP or key.endswith("_best"):
        return None
    if key.startswith(("grad_norm/", "update_ratio/")):
        return key
    return f"param/{key}" if regression else key


class TensorBoardWriter(Consumer):
    def __init__(self, root: str, command: str, many: bool, regression: bool):
        self.root, self.command, self.many, self.regression = Path(root), command, many, regression
        self.writers: dict[tuple[Any, ...], Any] = {}
        self.failed = ""  # why writing stopped (a full disk), once it has
        self.last_dir: Optional[str] = None  # the last run's folder (a language model's sample is written there)
        _quiet_writer_threads()

    def directory(self, run: RunInfo) -> Path:
        """DIR/command/label, or label-version_N (N = 1, 2, ...) when that name is taken by an earlier run or
        anything else: two invocations never write into one run folder (TensorBoard would merge them)."""
        base = self.root / self.command / run.label
        taken = {w.log_dir for w in self.writers.values()}
        version, path = 0, base
        while path.exists() or str(path) in taken:
            version += 1
            path = base.with_name(f"{base.name}-version_{version}")
        return path

    def _writer(self, run: RunInfo) -> Any:
        key = (run.key, run.index)
        if key not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            from losslab.errors import ConfigError

            where = self.directory(run)
            try:
                where.mkdir(parents=True)
                self.writers[key] = SummaryWriter(log_dir=str(where))
                self.last_dir = str(where)
            except OSError as exc:
                raise ConfigError("--tensorboard", f"cannot write the run folder {where}: "
                                  f"{exc.strerror or exc}") from None
        return self.writers[key]

    def on_run_begin(self, run: RunInfo) -> None:
        self._writer(run)

    def _stop(self, exc: OSError) -> None:
        """A write failed (a full disk): say so once and write nothing more; training and the other outputs go on."""
        import sys

        if not self.failed:
            self.failed = f"{exc.strerror or exc}"
            print(f"losslab: warning: --tensorboard: cannot write to {self.root} ({self.failed}); TensorBoard "
                  "output stopped here, the run goes on", file=sys.stderr, flush=True)

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> Optional[bool]:
        if self.failed:
            return None
        try:
            self._epoch(run, record)
        except OSError as exc:
            self._stop(exc)
        return None

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        if self.failed:
            self.writers.pop((run.key, run.index), None)
            return
        try:
            self._run_end(run, result)
        except OSError as exc:
            self._stop(exc)

    def _epoch(self, run: RunInfo, record: dict[str, Any]) -> None:
        writer = self._writer(run)
        for key, value in record.items():
            name = tag(key, self.regression)
            if name is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(name, value, record["epoch"])

    def _run_end(self, run: RunInfo, result: Any) -> None:
        writer = self._writer(run)
        steps = getattr(result, "steps", None)
        if steps:  # the LR range test: loss and rate against the step
            for i, (lr, loss) in enumerate(zip(steps["lr"], steps["loss"]), start=1):  # as history.csv counts
                writer.add_scalar("range_test/loss", loss, i)
                writer.add_scalar("range_test/lr", lr, i)
        elif self.many and getattr(result, "status", None) != "not run":
            hparams = {name: value for name, value in run.key}
            hparams["status"] = result.status
            metrics = {f"hparam/{k}": float(v) for k, v in result.metrics.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
            # the hparams summary goes into this run's own event file (SummaryWriter.add_hparams would open a
            # new timestamped run directory for it)
            from torch.utils.tensorboard.summary import hparams as hparams_summary

            file_writer = writer._get_file_writer()
            for summary in hparams_summary(hparams, metrics):
                file_writer.add_summary(summary)
            for name, value in metrics.items():
                writer.add_scalar(name, value)
        writer.flush()
        writer.close()
        self.writers.pop((run.key, run.index), None)

    def on_command_end(self, command: str, status: str, document: Any) -> None:
        sample = document.get("sample") if isinstance(document, dict) else None
        if isinstance(sample, str) and self.last_dir is not None and not self.failed:
            self._sample(document.get("prompt") or "", sample, int(document.get("steps") or 0))
        self.close()

    def _sample(self, prompt: str, sample: str, step: int) -> None:
        """A language model's generated text, as TensorBoard's Text tab shows it (indented: kept verbatim)."""
        from torch.utils.tensorboard import SummaryWriter

        text = "\n".join("    " + line for line in (prompt + sample).splitlines())
        try:
            with SummaryWriter(log_dir=self.last_dir) as writer:
                writer.add_text("sample", text, step)
        except OSError as exc:
            self._stop(exc)

    def close(self) -> None:
        """Anything still open (Ctrl-C between events) is flushed."""
        for writer in self.writers.values():
            try:
                writer.flush()
                writer.close()
            except OSError as exc:
                self._stop(exc)
        self.writers.clear()


def _quiet_writer_threads() -> None:
    """TensorBoard writes events from a background thread; a full disk makes it print a traceback there while the
    main thread gets the same error on its next write (and warns once). Keep the thread quiet about OSError."""
    import threading

    previous = threading.excepthook
    if getattr(previous, "losslab", False):
        return

    def hook(args: Any) -> None:
        if not (args.exc_type is not None and issubclass(args.exc_type, OSError)):
            previous(args)

    hook.losslab = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _factory(ctx: OutputContext) -> Optional[Consumer]:
    if ctx.tensorboard is None:
        return None
    return TensorBoardWriter(ctx.tensorboard, ctx.command, many=ctx.many, regression=ctx.task == "regression")


CONSUMERS.register("tensorboard", "TensorBoard event files (--tensorboard DIR)")(_factory)
