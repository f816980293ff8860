"""One function per command: build data, model, loss and optimizer from a config, run `fit`, return a result.

Nothing here prints. Display and result files consume the returned objects.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from losslab.callbacks import Callback
from losslab.config import RegressConfig
from losslab.data import RegressionData, least_squares, read_csv, synthetic


def versions() -> dict[str, str]:
    import torch

    from losslab import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "losslab": __version__}


@dataclass
class RegressResult:
    config: RegressConfig
    status: str
    records: list[dict[str, Any]]
    epochs_run: int
    final_loss: float
    params: dict[str, float]
    true_params: Optional[dict[str, float]]
    optimum: dict[str, Any]  # {"params": {...}, "loss": float}
    elapsed_s: float
    device: str
    data_source: str
    diverged_epoch: Optional[int] = None
    versions: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """Flat names that `--expect` can test."""
        out: dict[str, Any] = dict(self.params)
        out.update(final_loss=self.final_loss, epochs_run=self.epochs_run, elapsed_s=self.elapsed_s,
                   optimum_loss=self.optimum["loss"])
        for name, value in self.params.items():
            out[f"{name}_error"] = abs(value - self.optimum["params"][name])
        return out


def regress_metric_names(data: RegressionData) -> list[str]:
    names = data.param_names
    return names + ["final_loss", "epochs_run", "elapsed_s", "optimum_loss"] + [f"{n}_error" for n in names]


def load_regression_data(cfg: RegressConfig) -> RegressionData:
    d = cfg.data
    if d.csv is not None:
        return read_csv(d.csv)
    return synthetic(d.samples, d.features, d.true_w, d.true_b, d.noise, d.data_seed)


def regress(cfg: RegressConfig, data: Optional[RegressionData] = None,
            callbacks: Sequence[Callback] = ()) -> RegressResult:
    """Fit nn.Linear to the regression data with the configured loss and optimizer."""
    import torch

    from losslab.losses import build_loss
    from losslab.models import MODELS
    from losslab.optimizers import build_optimizer
    from losslab.training import fit, flat_list, resolve_device

    data = data if data is not None else load_regression_data(cfg)
    device = resolve_device(cfg.train.device)
    x = torch.from_numpy(data.x).to(device)
    y = torch.from_numpy(data.y).to(device)

    loss_fn = build_loss(cfg.loss)
    torch.manual_seed(cfg.train.seed)  # initial weights
    model = MODELS.lookup("linear").factory(data.features).to(device)
    check_loss_output(loss_fn, model, x[:2], y[:2])
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    generator = torch.Generator().manual_seed(cfg.train.seed)  # mini-batch order

    names = data.param_names
    weight, bias = model.weight, model.bias

    def track() -> dict[str, float]:
        return dict(zip(names, flat_list(weight) + flat_list(bias)))

    fitted = fit(model, loss_fn, optimizer, x, y, epochs=cfg.train.epochs, batch_size=cfg.train.batch_size,
                 clip_grad_norm=cfg.train.clip_grad_norm, generator=generator, track=track, callbacks=callbacks)

    with torch.no_grad():
        final_loss = float(loss_fn(model(x), y))
        opt_w, opt_b = least_squares(data.x, data.y)
        ls_model = MODELS.lookup("linear").factory(data.features).to(device)
        ls_model.weight.copy_(torch.as_tensor(opt_w, dtype=torch.float32).reshape(1, -1))
        ls_model.bias.fill_(opt_b)
        optimum_loss = float(loss_fn(ls_model(x), y))

    status = fitted.status
    if status == "ok" and not math.isfinite(final_loss):
        status = "diverged"
    true_params = None
    if data.true_w is not None:
        true_params = dict(zip(names, list(data.true_w) + [data.true_b]))
    return RegressResult(
        config=cfg,
        status=status,
        records=fitted.records,
        epochs_run=fitted.epochs_run,
        final_loss=final_loss,
        params=track(),
        true_params=true_params,
        optimum={"params": dict(zip(names, [float(v) for v in opt_w] + [opt_b])), "loss": optimum_loss},
        elapsed_s=fitted.elapsed_s,
        device=str(device),
        data_source=data.source,
        diverged_epoch=fitted.diverged_epoch or (fitted.epochs_run if status == "diverged" else None),
        versions=versions(),
    )


def check_loss_output(loss_fn: Any, model: Any, x: Any, y: Any) -> None:
    """A loss must return a scalar tensor; say so before training rather than fail inside it."""
    import torch

    from losslab.errors import ConfigError

    try:
        with torch.no_grad():
            out = loss_fn(model(x), y)
    except Exception as exc:
        raise ConfigError("--loss", f"calling the loss on a batch failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 0:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError("--loss", f"must return a scalar tensor (got {shape})")
