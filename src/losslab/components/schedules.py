"""Learning-rate schedule registry: name -> factory(optimizer, cfg, epochs, batches_per_epoch) building a
torch.optim.lr_scheduler scheduler; `epochs` are the schedule's own (the run's epochs after any warm-up). Each
entry's meta says whether it steps per batch (`per_batch`), needs the epoch's loss (`needs_metric`), and which
options it `accepts`. `none` builds nothing."""

from __future__ import annotations

from typing import Any, Callable

from losslab.components.registry import Registry

SCHEDULES: Registry[Callable[..., Any]] = Registry("schedule", "--schedule")


@SCHEDULES.register("none", "constant learning rate", accepts=set())
def _none(optimizer: Any, cfg: Any, epochs: int, batches: int) -> Any:
    return None


@SCHEDULES.register("step", "StepLR: multiply by --lr-gamma every --step-size epochs",
                    accepts={"step_size", "lr_gamma"})
def _step(optimizer: Any, cfg: Any, epochs: int, batches: int) -> Any:
    from torch.optim import lr_scheduler

    return lr_scheduler.StepLR(optimizer, step_size=cfg.step_size or 10, gamma=cfg.lr_gamma)


@SCHEDULES.register("multistep", "MultiStepLR: multiply by --lr-gamma at each of --milestones (epochs)",
                    accepts={"milestones", "lr_gamma"})
def _multistep(optimizer: Any, cfg: Any, epochs: int, batches: int) -> Any:
    from torch.optim import lr_scheduler

    return lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones or ()), gamma=cfg.lr_gamma)


@SCHEDULES.register("exponential", "ExponentialLR: multiply by --lr-gamma every epoch", accepts={"lr_gamma"})
def _exponential(optimizer: Any, cfg: Any, epochs: int, batches: int) -> Any:
    from torch.optim import lr_scheduler

    return lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_gamma)


@SCHEDULES.register("cosine", "CosineAnnealingLR over the epochs after warm-up, down to --eta-min",
                    accepts={"eta_min"})
def _cosine(optimizer: Any, cfg: Any, epochs: int, batches: int) -> Any:
    from torch.optim import lr_scheduler

    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs), eta_min=cfg.eta_min)


@SCHEDULES.register("onecycle", "OneCycleLR (Smith): up to --peak-lr (default 10 x --lr) and down, per batch; the "
                    "rate only (cycle_momentum off)",
                    accepts={"peak_lr"}, per_batch=True)
def _onecycle(optimizer: Any, cfg: Any, epochs: int, batches: int) -> Any:
    from torch.optim import lr_scheduler

    peak = cfg.peak_lr or 10 * optimizer.param_groups[0]["lr"]
    # the rate only: cycling momentum would turn plain SGD into momentum SGD and change Adam's beta1 mid-run
    return lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=epochs * batches, cycle_momentum=False)


@SCHEDULES.register("plateau", "ReduceLROnPlateau: multiply by --lr-factor after --lr-patience epochs without "
                    "a lower loss (validation loss where there is one)", accepts={"lr_patience", "lr_factor"},
                    needs_metric=True)
def _plateau(optimizer: Any, cfg: Any, epochs: int, batches: int) -> Any:
    from torch.optim import lr_scheduler

    return lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience)
