"""A training problem, prepared once and shared by every run on it: data tensors on the device, a model
factory, the losses runs may use, per-epoch evaluation and final metrics. Single runs, trials, stacked trials
and the range test all train on a `Problem` through the run path (`engine.runs`)."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any, Callable, Optional, Union

import torch

from losslab.components.datasets import ClassificationData, load_classification
from losslab.components.losses import build_loss, is_import_path, wants_balanced_weights, wants_log_softmax
from losslab.components.models import MODELS, build_classifier, build_user_model, is_user_model, load_user_model
from losslab.components.regression_data import (
    RegressionData,
    Scaling,
    diabetes,
    least_squares,
    read_csv,
    read_user_data,
    synthetic,
)
from losslab.config import ClassifyConfig, LossConfig, RegressConfig, TrainConfig, check_memory, parse_floats
from losslab.engine.batches import InMemory, Streamed
from losslab.engine.diagnosis import CONDITION
from losslab.engine.loop import flat_list, resolve_device, use_threads
from losslab.errors import USER_ERRORS, ConfigError, describe

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PARAM_BYTES = 200  # one parameter in one epoch: its record entry (~50 B measured), copies for the table, csv and JSON


class Problem:
    """Base: the data (`x`, `y`), the configured loss, and what every run on this data shares."""

    task: str
    has_validation: bool = False
    x: Optional[torch.Tensor]  # None when the data is streamed
    y: Optional[torch.Tensor]
    source: Any  # engine.batches.InMemory or Streamed: where the training batches come from
    valid: Any  # the same for the validation split (classification)
    cfg: Any  # the (resolved) config the problem was prepared from
    device: torch.device
    train_cfg: TrainConfig
    loss_cfg: LossConfig
    loss_fn: LossFn
    data: Any
    user_model: Optional[str] = None  # a user's own model (--model package.module:NAME), or a built-in one
    model_factory: Any = None  # its class or function
    no_gradient: list[str] = []  # its parameters the loss's gradient does not reach (they never train)
    until: Optional[int] = None  # a halving rung's last epoch: runs stop there; their schedules span every epoch
    unstacked: Optional[str] = None  # why runs that could have stacked trained one after another (reports say it)
    cannot_stack: Optional[str] = None  # why this kind of problem never trains stacked
    stack_by_timing: bool = False  # its runs stack through torch.func only where a timed probe finds it faster
    optimizer_kinds: dict[str, Any] = {}  # optimizer classes resolved here, for worker processes (executors.prepare)

    def __init__(self) -> None:
        self._losses: dict[LossConfig, LossFn] = {}
        self._views: dict[tuple[tuple[str, Any], ...], "Problem"] = {}
        self.base: "Problem" = self  # the problem a view was made from (itself when it is not a view)

    def for_run(self, spec: Any) -> "Problem":
        """The problem as a run spec sees it: this one, or one with the spec's `changes` made (made once, kept).
        Changes of training settings only (`train.batch_size`, `train.epochs`, `train.schedule`, ...) give a view
        that shares this problem's data, model factory, losses and halving budget and differs in `train_cfg`
        (and, for streamed data, batches cut to the new size); any other change (`model.hidden`,
        `data.data_seed`) gives a problem prepared from the changed config."""
        base = self.base
        if not spec.changes:
            return base
        view = base._views.get(spec.changes)
        if view is None:
            cfg = base.cfg
            for path, value in spec.changes:
                cfg = changed(cfg, path, value)
            if all(path.startswith("train.") for path, _ in spec.changes):
                view = copy.copy(base)
                view.train_cfg = cfg.train
                if hasattr(base.source, "rebatched") and view.train_cfg.batch_size != base.train_cfg.batch_size:
                    view.source = base.source.rebatched(view.train_cfg.batch_size or 64)
            else:
                view = build_problem(cfg.resolved())
            view.base = base
            base._views[spec.changes] = view
        view.until = base.until  # (a halving rung sets the base's)
        return view

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_views"] = {}  # views are made again where they are needed (a worker process)
        state["base"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.base = self

    def loss_for(self, cfg: Optional[LossConfig]) -> LossFn:
        """The loss a run trains with: the problem's own, or another one a run spec names (built once)."""
        if cfg is None or cfg == self.loss_cfg:
            return self.loss_fn
        if cfg not in self._losses:
            fn = self._build_loss(cfg)
            check_loss_output(fn, self.new_model(0), *self.source.head(probe_rows(self.n, self.train_cfg.batch_size)))
            self._losses[cfg] = fn
        return self._losses[cfg]

    @property
    def n(self) -> int:
        """Training samples."""
        return len(self.source)

    def _build_loss(self, cfg: LossConfig) -> LossFn:
        raise NotImplementedError

    def new_model(self, seed: int) -> torch.nn.Module:
        raise NotImplementedError

    def track(self, model: torch.nn.Module) -> Optional[Callable[[], dict[str, float]]]:
        """Values recorded every epoch besides loss, grad norm and lr (e.g. the parameters of a small model)."""
        return None

    def evaluate(self, model: torch.nn.Module, loss_fn: Optional[LossFn] = None) -> dict[str, float]:
        """Validation metrics each epoch (called in eval mode under no_grad); only where `has_validation`."""
        return {}

    def sharpness_tracker(self, loss_fn: LossFn) -> Callable[[torch.nn.Module], float]:
        """The sharpness of a model's training loss on a fixed evaluation set: the first --sharpness-samples
        training rows."""
        from losslab.engine.landscape import SharpnessTracker

        return SharpnessTracker(loss_fn, *self.source.head(self.train_cfg.sharpness_samples))

    def final_metrics(self, model: torch.nn.Module, loss_fn: Optional[LossFn] = None) -> dict[str, Any]:
        """Metrics of the trained model; always has `final_loss`."""
        raise NotImplementedError


def changed(cfg: Any, path: str, value: Any) -> Any:
    """A config with the field at dotted `path` (`train.batch_size`) set to `value`, validated again."""
    head, _, rest = path.partition(".")
    if not hasattr(cfg, head):
        raise ConfigError("changes", f"{path}: the run's config has no field {head!r}")
    return replace(cfg, **{head: changed(getattr(cfg, head), rest, value) if rest else value})


def materialise(model: torch.nn.Module, source: Any, spec: str) -> torch.nn.Module:
    """A model with lazy layers (`nn.LazyLinear`, common in user code) gets its parameters' shapes from one real
    batch of two rows, right after it is built (so the seeded initial weights are the same every time); nothing
    can count, stack or optimise its parameters before."""
    from torch.nn.parameter import is_lazy

    if not any(is_lazy(p) for p in model.parameters()):
        return model
    x, _ = source.head(min(2, len(source)))
    try:
        with torch.no_grad():
            model(x)
    except USER_ERRORS as exc:
        raise ConfigError("--model", f"{spec} has lazy layers, and their first batch (2 rows of shape "
                          f"{tuple(x.shape[1:])}) failed: {describe(exc)}") from None
    return model


def check_loss_output(loss_fn: Any, model: Any, x: Any, y: Any) -> None:
    """Before training, on a batch as large as training uses (up to 2,048 rows): the loss returns a scalar
    tensor connected to the prediction's graph, and its backward runs. Say what is wrong rather than fail
    inside the loop."""
    try:
        with torch.enable_grad():  # the check may be asked for under no_grad (e.g. by the stacked engine's probe)
            out = loss_fn(model(x), y)
    except USER_ERRORS as exc:
        raise ConfigError("--loss", f"calling the loss on a batch of {len(x)} failed: {type(exc).__name__}: "
                          f"{exc}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 0:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError("--loss", f"must return a scalar tensor (got {shape})")
    if not out.requires_grad:
        raise ConfigError("--loss", "returns a value not connected to the prediction's graph (a constant, a "
                          "detached tensor or a number): training would have no gradient")
    try:
        out.backward()
    except USER_ERRORS as exc:
        raise ConfigError("--loss", f"its backward fails: {describe(exc)}") from None
    finally:
        model.zero_grad(set_to_none=True)


def check_model(spec: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any,
                outputs: int) -> list[str]:
    """A user's model on one real batch, before training: its output has one value per row (regression) or one
    logit per class, is finite, and the loss's backward runs. Returns the names of the parameters the backward
    does not reach (they would never train). Each failure is one line naming --model."""
    with torch.enable_grad():
        try:
            out = model(x)
        except USER_ERRORS as exc:
            kinds = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()} - {"float32"})
            hint = (f" (its parameters are {', '.join(kinds)} and its inputs float32: cast them inside forward, "
                    "or keep the parameters float32)") if kinds else ""
            raise ConfigError("--model", f"{spec} fails on a batch of {len(x)} inputs of shape "
                              f"{tuple(x.shape[1:])}: {describe(exc)}{hint}") from None
        want = (len(x), outputs)
        if not isinstance(out, torch.Tensor):
            raise ConfigError("--model", f"{spec} returns {type(out).__name__}, not a tensor")
        if tuple(out.shape) != want:
            what = "one value per row" if outputs == 1 and y.is_floating_point() else f"{outputs} logits per row"
            raise ConfigError("--model", f"{spec} returns shape {tuple(out.shape)} for a batch of {len(x)}; this "
                              f"task needs {what}: {want}")
    frozen = backward_reaches(spec, model, out, y, loss_fn)
    model.eval()  # validation and the final loss run it in eval mode: the same shape there
    try:
        with torch.no_grad():
            out = model(x)
    except USER_ERRORS as exc:
        raise ConfigError("--model", f"{spec} fails in eval mode (validation, the final loss) on a batch of "
                          f"{len(x)}: {describe(exc)}") from None
    finally:
        model.train()
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError("--model", f"{spec} returns {shape} in eval mode (validation, the final loss) but {want} "
                          f"in training mode for a batch of {len(x)}")
    return frozen


def backward_reaches(spec: str, model: torch.nn.Module, out: torch.Tensor, y: torch.Tensor, loss_fn: Any) -> list[str]:
    """A user's model's first output is finite and the loss's backward runs through it (one line naming --model
    if not); returns the names of the parameters the gradient does not reach (they would never train)."""
    with torch.enable_grad():
        if not torch.isfinite(out).all():
            raise ConfigError("--model", f"{spec} returns non-finite values (NaN or inf) on the first batch")
        try:
            loss_fn(out, y).backward()
        except USER_ERRORS as exc:
            raise ConfigError("--model", f"{spec}: the backward pass through it fails: {describe(exc)}") from None
    frozen = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return frozen


def probe_rows(n: int, batch_size: Optional[int]) -> int:
    """How many rows the loss check uses: one training batch, at least 2, at most 2,048."""
    return max(2, min(n, batch_size or n, 2048))


def data_probe(problem: "Problem", rows: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, target) of the initial model on the first training rows, in float64 on the CPU, for the
    gradient check of a user's loss on the data it will train on."""
    x, y = problem.source.head(min(rows, problem.n))
    with torch.no_grad():
        pred = problem.new_model(0)(x).double().cpu()
    target = y.cpu().double() if y.is_floating_point() else y.cpu()
    return pred.requires_grad_(True), target


def checked_loss(cfg: LossConfig, fn: LossFn, problem: "Problem") -> LossFn:
    """An import-path loss gets the quick form of `losslab check-loss` before any epoch (unless --no-check-loss),
    on every residual scale and on the problem's own data."""
    if not is_import_path(cfg.name) or not cfg.check:
        return fn
    from losslab.engine.loss_check import check_loss

    rows = probe_rows(problem.n, problem.train_cfg.batch_size)  # the run's own batch: a hard-coded size shows
    report = check_loss(fn, cfg.name, problem.task, quick=True, data=data_probe(problem, rows))
    failed = next((c for c in report.checks if not c.passed), None)
    if failed is not None:
        raise ConfigError("--loss", f"{cfg.name} fails the {failed.name} check: {failed.detail} (details: losslab "
                          f"check-loss {cfg.name}; --no-check-loss trains anyway)")
    return fn


def load_regression_data(cfg: RegressConfig) -> RegressionData:
    d = cfg.data
    if d.csv is not None:
        return read_csv(d.csv, d.target, d.columns)
    if d.dataset == "diabetes":
        return diabetes()
    if ":" in d.dataset:  # a user's own data
        return read_user_data(d.dataset)
    weights = d.true_w * d.features if len(d.true_w) == 1 else d.true_w
    return synthetic(d.samples, d.features, weights, d.true_b, d.noise, d.data_seed)


class RegressionProblem(Problem):
    task = "regression"

    def __init__(self, cfg: RegressConfig, data: Optional[RegressionData] = None):
        super().__init__()
        data = data if data is not None else load_regression_data(cfg)
        self.cfg, self.data, self.train_cfg, self.loss_cfg = cfg, data, cfg.train, cfg.loss
        self.device = resolve_device(cfg.train.device)
        use_threads(cfg.train.threads)
        # a user's table trains on standardised columns; every parameter is reported in the data's units
        self.scaling = Scaling.of(data) if cfg.data.standardize else None
        x, y = self.scaling.apply(data) if self.scaling is not None else (data.x, data.y)
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(y).to(self.device)
        self.source = InMemory(self.x, self.y)
        self.heldout: Optional[RegressionData] = None  # rows a comparison measures every fit on (compare-losses)
        self.user_model = None if cfg.linear else cfg.model  # a user's own model: an import path
        # its class or function, loaded once (and shipped with the problem to worker processes and Ray tasks)
        self.model_factory = load_user_model(cfg.model) if self.user_model is not None else None
        self.names = data.param_names  # the linear model's parameters (w..., b): its optimum's, the truth's
        self.tracked = self.names if self.user_model is None else []  # the parameters every record holds
        # every epoch's record holds every tracked parameter: a wide table over many epochs must fit in memory
        epochs = cfg.train.epochs or 0
        check_memory("--features" if cfg.data.csv is None else "--data", epochs * len(self.tracked) * PARAM_BYTES,
                     f"recording {len(self.tracked):,} parameters for each of {epochs:,} epochs")
        self.loss_fn = self._build_loss(cfg.loss)
        batch = self.source.head(probe_rows(self.n, cfg.train.batch_size))
        self.no_gradient: list[str] = []  # a user model's parameters the loss's gradient does not reach
        try:
            first = self.new_model(0)  # (one model for both checks: a user's constructor runs once for them)
            if self.user_model is not None:
                self.no_gradient = check_model(self.user_model, first, batch[0], batch[1], self.loss_fn, 1)
        except ConfigError as exc:  # a classifier given to the regression task (the many-run commands' default)
            if exc.option != "--model" or self.user_model is None:
                raise
            raise ConfigError("--model", f"{exc.message} — the regression data here is rows of {data.features} "
                              "feature(s) with one real target; an image model or a classifier trains with "
                              "--task classify (or losslab classify)") from None
        check_loss_output(self.loss_fn, first, *batch)
        probe = self._linear()
        opt_w, opt_b = least_squares(data.x, data.y)  # in the data's units
        trained_w, trained_b = least_squares(x, y) if self.scaling is not None else (opt_w, opt_b)
        with torch.no_grad():
            probe.weight.copy_(torch.as_tensor(trained_w, dtype=torch.float32).reshape(1, -1))
            probe.bias.fill_(trained_b)
            optimum_loss = float(self.loss_fn(probe(self.x), self.y))
        self.optimum: dict[str, Any] = {"params": dict(zip(self.names, [float(v) for v in opt_w] + [opt_b])),
                                        "loss": optimum_loss}
        self.true_params: Optional[dict[str, float]] = (dict(zip(self.names, [*data.true_w, data.true_b or 0.0]))
                            if data.true_w is not None else None)
        condition = condition_number(x) if self.scaling is None else None
        self.ill_conditioned = condition if condition is not None and condition > CONDITION else None

    def _build_loss(self, cfg: LossConfig) -> LossFn:
        return checked_loss(cfg, build_loss(cfg), self)

    def _linear(self) -> torch.nn.Module:
        return MODELS.lookup("linear").factory(self.data.features).to(self.device)

    def new_model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)  # initial weights
        if self.user_model is not None:
            model = build_user_model(self.user_model, (self.data.features,), 1, self.model_factory).to(self.device)
            return materialise(model, self.source, self.user_model)
        return self._linear()

    def in_data_units(self, theta: torch.Tensor) -> list[float]:
        """The flat parameters [w..., b] of a model trained on this problem, in the data's units."""
        if self.scaling is None:
            return theta.tolist()
        return self.scaling.to_data_units(theta.detach().cpu().double()).tolist()

    def predict(self, model: torch.nn.Module, x: Any) -> Any:
        """A trained model's predictions for feature rows `x` (numpy, the data's units), in the target's units
        (numpy float64, one per row): the training standardisation applied to the inputs and undone on the
        outputs."""
        import numpy as np

        inputs = self.scaling.inputs(x) if self.scaling is not None else x.astype(np.float32)
        model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(inputs).to(self.device)).reshape(-1).double().cpu().numpy()
        return self.scaling.targets(out) if self.scaling is not None else out

    def params(self, model: torch.nn.Module) -> dict[str, float]:
        """The linear model's weights and bias by name, in the data's units (a user's model has none to name)."""
        if self.user_model is not None:
            return {}
        if self.scaling is None:
            return dict(zip(self.names, flat_list(model.weight) + flat_list(model.bias)))
        return dict(zip(self.names, self.in_data_units(torch.cat([model.weight.reshape(-1), model.bias]))))

    def track(self, model: torch.nn.Module) -> Optional[Callable[[], dict[str, float]]]:
        if self.user_model is not None:
            return None
        if self.scaling is not None:
            return lambda: self.params(model)
        names, weight, bias = self.names, model.weight, model.bias
        return lambda: dict(zip(names, flat_list(weight) + flat_list(bias)))

    def final_metrics(self, model: torch.nn.Module, loss_fn: Optional[LossFn] = None) -> dict[str, Any]:
        with torch.no_grad():
            final_loss = float((loss_fn or self.loss_fn)(model(self.x), self.y))
        params = self.params(model)
        if not params:  # a user's model: no weights to set beside the linear optimum's; its held-out errors
            out: dict[str, Any] = {"final_loss": final_loss, "params": params}
            if self.heldout is not None:
                out.update(heldout_errors(self.predict(model, self.heldout.x), self.heldout.y))
            return out
        optimum: dict[str, float] = self.optimum["params"]
        distance = math.sqrt(sum((params[n] - optimum[n]) ** 2 for n in self.names))
        return {"final_loss": final_loss, "params": params, "optimum_distance": distance}


def heldout_errors(pred: Any, y: Any) -> dict[str, float]:
    """Median absolute, mean squared and mean absolute error of predictions (float64) on held-out targets."""
    import numpy as np

    residual = np.abs(pred - y[:, 0].astype(np.float64))
    return {"heldout_medae": float(np.median(residual)), "heldout_mse": float(np.mean(residual ** 2)),
            "heldout_mae": float(np.mean(residual))}


def condition_number(x: Any, largest: int = 2000) -> Optional[float]:
    """The condition number of MSE's Hessian for a linear model with a bias, [x 1]ᵀ[x 1] / n: the squared ratio
    of the design's extreme singular values (float64). None where it says nothing a rate could fix (fewer rows
    than parameters: singular) or would cost too much (both sides above `largest`)."""
    import numpy as np

    n, p = x.shape[0], x.shape[1] + 1
    if n < p or min(n, p) > largest:
        return None
    design = np.hstack([x.astype(np.float64), np.ones((n, 1))])
    s = np.linalg.svd(design, compute_uv=False)
    return float((s[0] / s[-1]) ** 2) if s[-1] > 0 else None


def leaf_outputs(model: torch.nn.Module, sample: torch.Tensor) -> Optional[int]:
    """Values the leaf modules of `model` output for `sample` (what a training step keeps for the backward pass),
    or None when the forward fails."""
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() if isinstance(o, torch.Tensor) else 0))
             for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(sample)
    except USER_ERRORS:
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return sum(sizes)


def training_memory(model_cfg: Any, input_shape: Any, classes: int, batch: int) -> tuple[int, int]:
    """(parameters, activation values) of one training step, measured by building the model and running a
    batch on the `meta` device: no memory is allocated for either."""
    with torch.device("meta"):
        model = build_classifier(model_cfg, input_shape, classes)
        sizes = leaf_outputs(model, torch.empty(batch, *input_shape))
    if sizes is None:
        raise RuntimeError(f"{model_cfg.name} does not run on the meta device")
    return sum(p.numel() for p in model.parameters()), sizes


def check_training_memory(cfg: ClassifyConfig, input_shape: Any, classes: int, batch: int) -> None:
    """Refuse before allocating a model whose training step would not fit: float32 parameters with their gradient
    and two optimizer states, and every layer's output for a batch kept for the backward pass (twice, with its
    gradient)."""
    try:
        params, activations = training_memory(cfg.model, input_shape, classes, batch)
    except USER_ERRORS:  # (the ConfigError the build makes of a constructor's failure too)
        # a user's model that cannot be built or run on the meta device (its constructor calls .item(), say): the
        # estimate is the probe's problem, not the model's; its check on a real batch follows
        if is_user_model(cfg.model.name):
            return
        raise
    shape = "x".join(map(str, input_shape))
    check_memory("--image-size" if len(input_shape) == 3 and cfg.data.dataset == "imagefolder" else "--model",
                 4 * (4 * params + 2 * activations),
                 f"training {cfg.model.name} ({params:,} parameters) on {shape} inputs in batches of {batch:,}")


def evaluate_classifier(model: Any, loss_fn: Any, chunks: Any) -> tuple[float, Any]:
    """Mean loss and predicted classes over the (x, y) chunks of a split (in memory or streamed), in order.
    Call under no_grad/eval."""
    total, seen, preds = 0.0, 0, []
    for xb, yb in chunks:
        out = model(xb)
        total += float(loss_fn(out, yb)) * len(out)
        seen += len(out)
        preds.append(out.argmax(dim=1))
    return total / seen, torch.cat(preds)


def class_weights(spec: Optional[str], y: Any, classes: int) -> Any:
    """None, 'balanced' (n / (classes · count_c), as scikit-learn computes it) or a comma list."""
    if spec is None:
        return None
    if spec == "balanced":
        counts = torch.bincount(y, minlength=classes).double()
        return (len(y) / (classes * counts.clamp_min(1))).float()
    weights = parse_floats("--class-weights", spec) or ()
    if len(weights) != classes:
        raise ConfigError("--class-weights", f"gives {len(weights)} weights for {classes} classes")
    return torch.tensor(weights, dtype=torch.float32)


class ClassificationProblem(Problem):
    task = "classification"
    has_validation = True

    def __init__(self, cfg: ClassifyConfig, data: Optional[ClassificationData] = None):
        super().__init__()
        data = data if data is not None else load_classification(cfg.data)
        self.cfg, self.data, self.train_cfg, self.loss_cfg = cfg, data, cfg.train, cfg.loss
        self.device = resolve_device(cfg.train.device)
        use_threads(cfg.train.threads)
        self.k = data.num_classes
        self.user_model = cfg.model.name if is_user_model(cfg.model.name) else None  # a user's own: an import path
        self.model_factory = load_user_model(self.user_model) if self.user_model is not None else None
        self.y_val = data.y_val.to(self.device)
        if data.streamed:  # decoded batch by batch by DataLoader workers
            workers = cfg.data.workers
            batch = cfg.train.batch_size or 64
            self.x = self.y = self.x_val = None
            self.source = Streamed(data.train_set, batch, workers, self.device, data.y_train)
            self.valid = Streamed(data.val_set, batch, workers, self.device, data.y_val)
        else:
            assert data.x_train is not None and data.x_val is not None  # in memory
            self.x, self.y = data.x_train.to(self.device), data.y_train.to(self.device)
            self.x_val = data.x_val.to(self.device)
            self.source, self.valid = InMemory(self.x, self.y), InMemory(self.x_val, self.y_val)
        if self.x is not None and not self.x.is_floating_point() and self.user_model is None:
            raise ConfigError("--model", f"the inputs of {cfg.data.dataset} are integers (token ids): the built-in "
                              f"{cfg.model.name} would read them as numbers; give your own model with an nn.Embedding "
                              "(--model package.module:NAME)")
        check_training_memory(cfg, data.input_shape, self.k, cfg.train.batch_size or (64 if data.streamed else self.n))
        self.loss_fn = self._build_loss(cfg.loss)
        batch = self.source.head(probe_rows(self.n, cfg.train.batch_size))
        self.no_gradient: list[str] = []  # a user model's parameters the loss's gradient does not reach
        first = self.new_model(0)  # (one model for both checks: a user's constructor runs once for them)
        if self.user_model is not None:
            self.no_gradient = check_model(self.user_model, first, batch[0], batch[1], self.loss_fn, self.k)
        check_loss_output(self.loss_fn, first, *batch)

    def _build_loss(self, cfg: LossConfig) -> LossFn:
        spec = "balanced" if wants_balanced_weights(cfg.name) else getattr(cfg, "class_weights", None)
        weight = class_weights(spec, self.data.y_train, self.k)
        return checked_loss(cfg, build_loss(cfg, None if weight is None else weight.to(self.device), classes=self.k),
                            self)

    def new_model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)  # initial weights
        model = (build_user_model(self.cfg.model.name, tuple(self.data.input_shape), self.k, self.model_factory)
                 if self.model_factory is not None else build_classifier(self.cfg.model, self.data.input_shape, self.k))
        if self.model_factory is not None:
            model = materialise(model.to(self.device), self.source, self.cfg.model.name)
        if wants_log_softmax(self.cfg.loss.name):
            layers = list(model) if isinstance(model, torch.nn.Sequential) else [model]
            model = torch.nn.Sequential(*layers, torch.nn.LogSoftmax(dim=1))
        return model.to(self.device)

    def evaluate(self, model: torch.nn.Module, loss_fn: Optional[LossFn] = None) -> dict[str, float]:
        loss, pred = evaluate_classifier(model, loss_fn or self.loss_fn, self.valid.chunks())
        return {"valid_loss": loss, "valid_acc": (pred == self.y_val).float().mean().item()}

    def final_metrics(self, model: torch.nn.Module, loss_fn: Optional[LossFn] = None) -> dict[str, Any]:
        model.eval()
        with torch.no_grad():
            valid_loss, pred = evaluate_classifier(model, loss_fn or self.loss_fn, self.valid.chunks())
        k = self.k
        confusion = torch.bincount(self.y_val * k + pred, minlength=k * k).reshape(k, k).cpu()
        support = confusion.sum(dim=1)
        per_class = {c: (float(confusion[i, i]) / int(support[i]) if int(support[i]) else None)
                     for i, c in enumerate(self.data.classes)}
        return {"final_loss": valid_loss, "accuracy": float(confusion.diag().sum()) / max(1, int(confusion.sum())),
                "per_class_accuracy": per_class, "confusion": confusion.tolist(), **self.calibration(model)}

    def calibration(self, model: torch.nn.Module, bins: int = 15) -> dict[str, float]:
        """Loss-independent quality of the predicted probabilities on the validation split: cross-entropy
        (NLL) and expected calibration error (`bins` equal-width confidence bins, as Guo et al. 2017)."""
        with torch.no_grad():
            logits = torch.cat([model(xb) for xb, _ in self.valid.chunks()])
            logp = torch.log_softmax(logits.double(), dim=1)  # also right for models ending in log-softmax
            nll = float(torch.nn.functional.nll_loss(logp, self.y_val))
            conf, pred = logp.exp().max(dim=1)
            correct = (pred == self.y_val).double()
            edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64, device=conf.device)
            ece = 0.0
            for lo, hi in zip(edges[:-1], edges[1:]):
                inside = (conf > lo) & (conf <= hi)
                if inside.any():
                    ece += float(inside.double().mean() * (conf[inside].mean() - correct[inside].mean()).abs())
        return {"nll": nll, "ece": ece}


AnyProblem = Union[RegressionProblem, ClassificationProblem]


def build_problem(cfg: Any) -> AnyProblem:
    """The prepared problem of a (resolved) one-run config: its task's problem class (components.tasks)."""
    import importlib

    from losslab.components.tasks import task

    module, _, name = task(cfg.task).problem.partition(":")
    return getattr(importlib.import_module(module), name)(cfg)
