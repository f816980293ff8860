"""`losslab landscape`: the loss around the weights a run trained to — the exact surface of a two-parameter model
with the paths of one or several optimizers from one start, or for any model the loss along the line from the
initial to the final weights (`--line`) or on a plane through the final weights (`--plane`: filter-normalised
random directions, or `--directions pca`, the plane of the path's two principal directions, with the path on it).
Every grid is evaluated as one batched computation (engine.landscape). The sharpness — the top Hessian eigenvalue
of the training loss at each path's final weights — is set against 2/lr, where gradient descent on a quadratic
stops converging; the Hessian's trace beside it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from losslab.commands.common import Output, Where, context, finish, run_records
from losslab.config import LandscapeConfig, check_out_dir
from losslab.engine.events import Consumer, Dispatcher
from losslab.engine.problems import build_problem
from losslab.engine.runs import RunResult, RunSpec, Start, execute, run_info
from losslab.errors import ConfigError
from losslab.outputs import dispatcher
from losslab.outputs.display import Report, TrialsDisplay, fmt, make_console
from losslab.outputs.files import versions

if TYPE_CHECKING:
    import torch

COMMAND = "landscape"
PLOTS = ("landscape.png",)
SNAPSHOT_FLOATS = 20_000_000  # at most this many numbers of a training path are kept (every k-th epoch beyond)


class Snapshots(Consumer):
    """The flat weights of a model at its start and after every epoch (every k-th when the path is long)."""

    def __init__(self, model: Any, epochs: int):
        from losslab.engine.landscape import flat

        self.model, self.flat = model, flat
        size = sum(p.numel() for p in model.parameters())
        self.every = max(1, math.ceil(epochs * size / SNAPSHOT_FLOATS))
        self.points = [flat(model).clone()]
        self.epochs = [0]

    def on_epoch_end(self, run: Any, record: dict[str, Any]) -> None:
        if record["epoch"] % self.every == 0:
            self.points.append(self.flat(self.model).clone())
            self.epochs.append(record["epoch"])


@dataclass
class Path:
    name: str
    lr: float
    result: RunResult
    model: Any
    points: "torch.Tensor"  # (snapshots, P)
    epochs: list[int]
    sharpness: Any = None  # engine.landscape.Eigen at the final weights
    coords: list[tuple[float, ...]] = field(default_factory=list)  # the path in the plot's coordinates

    @property
    def finite(self) -> bool:
        return bool(self.points[-1].isfinite().all())


@dataclass
class LandscapeResult:
    config: LandscapeConfig
    status: str
    mode: str  # surface, line, plane
    axes: list[str]
    xs: list[float]
    ys: list[float]  # empty for a line
    train: list[Any]  # the loss on the grid: a list (line) or rows over ys of columns over xs
    valid: Optional[list[Any]]
    paths: list[Path]
    notes: list[str]
    optimum: Optional[tuple[float, ...]] = None
    trace: Any = None
    elapsed_s: float = 0.0
    data_source: str = ""
    device: str = "cpu"
    versions: dict[str, str] = field(default_factory=dict)


def saved_paths(cfg: LandscapeConfig, problem: Any) -> list[Path]:
    """--between A B: the two saved runs' weights, loaded into this run's model (the line goes from A to B)."""
    import torch

    from losslab.engine.checkpoints import read
    from losslab.engine.landscape import flat

    assert cfg.between is not None
    paths = []
    for file in cfg.between:
        ckpt = read(file, "--between")
        model = problem.new_model(cfg.run.train.seed)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except (RuntimeError, KeyError, TypeError) as exc:
            why = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line or "key" in line),
                       type(exc).__name__)
            raise ConfigError("--between", f"{file}'s weights do not fit this run's model: {why} (give the data and "
                              "model options it was trained with)") from None
        lr = float(((ckpt.get("config") or {}).get("optim") or {}).get("lr") or cfg.run.optim.lr or 0.0)
        with torch.no_grad():
            model.eval()
            loss = float(problem.loss_fn(model(problem.x), problem.y))
        spec = RunSpec(file_name(file), cfg.run.optim, cfg.run.train.seed)
        point = flat(model)
        paths.append(Path(file_name(file), lr, RunResult(spec, "ok", metrics={"final_loss": loss}), model,
                          point.unsqueeze(0), [0]))
    first, second = paths
    first.points = torch.stack([first.points[0], second.points[0]])  # the "path" the line follows: A, then B
    return paths


def file_name(file: str) -> str:
    from pathlib import Path as FilePath

    return FilePath(file).name


def train_paths(cfg: LandscapeConfig, problem: Any, events: Consumer) -> list[Path]:
    """Each optimizer from the same initial weights and data order, its weights kept after every epoch."""
    from losslab.components.optimizers import build_optimizer

    names = cfg.optims or (cfg.run.optim.name,)
    seed = cfg.run.train.seed
    paths = []
    for i, name in enumerate(names):
        optim = cfg.optim_for(name)
        spec = RunSpec(name, optim, seed)
        model = problem.new_model(seed)
        snapshots = Snapshots(model, cfg.run.train.epochs or 1)
        info = run_info(problem, spec, COMMAND, index=i, total=len(names))
        result = execute(problem, spec, Dispatcher([snapshots, events]), info=info,
                         start=Start(model, build_optimizer(model, optim)), single=True)
        import torch

        paths.append(Path(name, float(optim.lr or 0.0), result, model, torch.stack(snapshots.points),
                          snapshots.epochs))
    return paths


def _data(problem: Any) -> tuple[Any, Any, Any, Any]:
    if getattr(problem, "x", None) is None:
        raise ConfigError("--dataset", "landscape evaluates the loss on data held in memory; this dataset is "
                          "streamed (over --memory-budget)")
    return problem.x, problem.y, getattr(problem, "x_val", None), getattr(problem, "y_val", None)


def _curvature(path: Path, problem: Any, x: Any, y: Any) -> None:
    from losslab.engine.landscape import flat, hvp_of, loss_at, top_eigenvalue

    theta = flat(path.model)  # the weights it ended with
    f = loss_at(path.model.eval(), problem.loss_fn, x, y)
    path.sharpness = top_eigenvalue(hvp_of(f, theta), len(theta), dtype=theta.dtype, device=theta.device)


@dataclass
class Grid:
    """Where the loss is evaluated: the axes' names and values, the points (flat weights) row by row."""

    axes: list[str]
    xs: "torch.Tensor"
    ys: "torch.Tensor"
    points: "torch.Tensor"
    optimum: Optional[tuple[float, ...]] = None


def surface_grid(cfg: LandscapeConfig, problem: Any, usable: list[Path], notes: list[str]) -> Grid:
    """The two parameters themselves as axes, covering every path and the least-squares optimum."""
    import torch

    model, final, n = usable[0].model, usable[0].points[-1], cfg.grid
    if len(final) != 2:
        raise ConfigError("--model", f"the exact surface needs a model of two parameters (this one has "
                          f"{len(final):,}): use --line or --plane")
    every = torch.cat([p.points[:, :2] for p in usable])
    optimum = None
    if getattr(problem, "optimum", None) and problem.optimum.get("params"):
        optimum = tuple(float(v) for v in list(problem.optimum["params"].values())[:2])
        every = torch.cat([every, torch.tensor([optimum], dtype=every.dtype)])
    lo, hi = every.min(dim=0).values, every.max(dim=0).values
    pad = (hi - lo).clamp_min(1e-3) * 0.15
    xs = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), n)
    ys = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), n)
    points = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).reshape(-1, 2).to(final)
    for p in usable:
        p.coords = [tuple(map(float, pt)) for pt in p.points[:, :2]]
    notes.append("the exact loss over the two parameters; every optimizer started from the same weights and "
                 "trained on the same data order (the set-up of compare-optimizers)")
    return Grid([name for name, _ in model.named_parameters()], xs, ys, points, optimum)


def line_grid(cfg: LandscapeConfig, first: Path) -> Grid:
    import torch

    from losslab.engine.landscape import grid_points

    start, final = first.points[0], first.points[-1]
    ts = torch.linspace(-cfg.span / 4, 1 + cfg.span / 4, cfg.grid)
    ts = torch.unique(torch.cat([ts, torch.tensor([0.0, 1.0])]))  # the two ends of training on the line, exactly
    axis = (f"t (0: {cfg.between[0]}, 1: {cfg.between[1]})" if cfg.between else "t (0: initial weights, 1: final)")
    return Grid([axis], ts, torch.tensor([]), grid_points(start, final - start, None, ts.tolist()))


def plane_grid(cfg: LandscapeConfig, first: Path, notes: list[str]) -> Grid:
    import torch

    from losslab.engine import landscape as surface

    final = first.points[-1]
    if cfg.directions == "pca":
        d1, d2, share = surface.principal_directions(first.points, final)
        coords = surface.project(first.points, final, d1, d2)
        extent = float(coords.abs().max()) * 1.25 or cfg.span
        first.coords = [tuple(map(float, c)) for c in coords]
        axes = [f"PC1 ({share[0]:.0%} of the path)", f"PC2 ({share[1]:.0%})"]
        notes.append("the plane of the training path's two principal directions (unit length) through the final "
                     "weights; the path projected on it")
    else:
        g = torch.Generator().manual_seed(cfg.run.train.seed)
        d1, d2 = surface.filter_normalised(first.model, g), surface.filter_normalised(first.model, g)
        extent = cfg.span
        axes = ["α (direction 1)", "β (direction 2)"]
        notes.append("two random directions, each filter rescaled to the norm of the weight filter it perturbs "
                     "(biases and normalisation parameters left out, as Li et al. 2018); the training path is not "
                     "drawn (random directions are nearly orthogonal to it: --directions pca draws it)")
    xs = torch.linspace(-extent, extent, cfg.grid)
    ys = torch.linspace(-extent, extent, cfg.grid)
    return Grid(axes, xs, ys, surface.grid_points(final, d2, d1, ys.tolist(), xs.tolist()))  # rows: β; columns: α


def landscape(cfg: LandscapeConfig, problem: Any, events: Consumer = Consumer()) -> LandscapeResult:
    from losslab.engine import landscape as surface

    started = time.perf_counter()
    cfg = cfg.resolved()
    x, y, xv, yv = _data(problem)
    paths = saved_paths(cfg, problem) if cfg.between else train_paths(cfg, problem, events)
    usable = [p for p in paths if p.finite]
    notes = [f"{p.name} diverged: left out of the surface" for p in paths if not p.finite]
    common = dict(data_source=problem.data.source, device=str(problem.device), versions=versions())
    if not usable:
        return LandscapeResult(cfg, "diverged", cfg.mode, [], [], [], [], None, paths,
                               notes + ["every run diverged: no finite weights to draw the loss around"],
                               elapsed_s=time.perf_counter() - started, **common)
    first = usable[0]
    mode = cfg.mode if cfg.mode != "auto" else ("surface" if len(first.points[-1]) == 2 else "plane")
    grid = (surface_grid(cfg, problem, usable, notes) if mode == "surface" else
            line_grid(cfg, first) if mode == "line" else plane_grid(cfg, first, notes))
    how: list[str] = []
    train = surface.losses(first.model, problem.loss_fn, x, y, grid.points, how=how)
    valid = surface.losses(first.model, problem.loss_fn, xv, yv, grid.points) if xv is not None else None
    notes.append(f"grid evaluated {how[0]}" if how else "")
    shape = (len(grid.xs),) if mode == "line" else (len(grid.ys), len(grid.xs))
    for p in usable:
        _curvature(p, problem, x, y)
    return LandscapeResult(cfg, "ok", mode, grid.axes, grid.xs.tolist(), grid.ys.tolist(),
                           train.reshape(shape).tolist(), None if valid is None else valid.reshape(shape).tolist(),
                           paths, notes, grid.optimum, _trace(first, problem, x, y), time.perf_counter() - started,
                           **common)


def _trace(path: Path, problem: Any, x: Any, y: Any) -> Any:
    from losslab.engine.landscape import flat, hessian_trace, hvp_of, loss_at

    theta = flat(path.model)
    f = loss_at(path.model.eval(), problem.loss_fn, x, y)
    return hessian_trace(hvp_of(f, theta), len(theta), dtype=theta.dtype, device=theta.device)


def document(result: LandscapeResult) -> dict[str, Any]:
    def path_doc(p: Path) -> dict[str, Any]:
        s = p.sharpness
        return {"optimizer": p.name, "lr": p.lr, "status": p.result.status,
                "final_loss": p.result.metrics.get("final_loss"), "epochs": p.epochs, "coords": p.coords,
                "sharpness": None if s is None else {"value": s.value, "iterations": s.iterations,
                                                     "converged": s.converged, "tolerance": s.tolerance},
                "sharpness_x_lr": None if s is None else s.value * p.lr, "two_over_lr": 2 / p.lr if p.lr else None}

    t = result.trace
    return {"command": COMMAND, "status": result.status, "task": result.config.task, "mode": result.mode,
            "config": result.config.to_dict(), "axes": result.axes, "x": result.xs, "y": result.ys,
            "train_loss": result.train, "valid_loss": result.valid, "optimum": result.optimum,
            "paths": [path_doc(p) for p in result.paths],
            "trace": None if t is None else {"value": t.value, "exact": t.exact, "std_error": t.std_error,
                                             "samples": t.samples},
            "notes": result.notes, "data": result.data_source, "device": result.device,
            "elapsed_s": result.elapsed_s, "versions": result.versions}


def report(result: LandscapeResult) -> Report:
    rows = []
    for p in result.paths:
        s = p.sharpness
        product = None if s is None else s.value * p.lr
        verdict = "—" if product is None else ("past 2: GD unstable" if product > 2 else
                                               "near 2: edge of stability" if product > 1.8 else "below 2")
        rows.append([p.name, fmt(p.lr, ".3g"), fmt(p.result.metrics.get("final_loss"), ".6g"),
                     fmt(None if s is None else s.value, ".4g"), fmt(2 / p.lr if p.lr else None, ".4g"),
                     fmt(product, ".3g"), verdict])
    where = {"surface": "the exact surface over " + ", ".join(result.axes),
             "line": ("the line from the initial to the final weights" if not result.config.between else
                      f"the line from {result.config.between[0]} to {result.config.between[1]}"),
             "plane": "a plane through the final weights"}.get(result.mode, result.mode)
    size = f"{len(result.xs)}" + ("" if result.mode == "line" else f" × {len(result.ys)}")
    title = f"losslab landscape: {result.status} — {where}, {size} points in {result.elapsed_s:.1f} s"
    notes = [f"data: {result.data_source}"] + list(result.notes)
    notes.append("sharpness: the top eigenvalue λmax of the training loss's Hessian at the final weights (power "
                 "iteration on Hessian-vector products, converged to 1e-6 relative); gradient descent on a "
                 "quadratic converges only while λmax < 2/lr")
    if result.trace is not None:
        t = result.trace
        how = "exact" if t.exact else f"Hutchinson, {t.samples} samples, ± {t.std_error:.2g}"
        notes.append(f"Hessian trace at {result.paths[0].name}'s final weights: {t.value:.6g} ({how})")
    if result.optimum is not None:
        notes.append(f"least-squares optimum: ({result.optimum[0]:.6g}, {result.optimum[1]:.6g})")
    if result.train:
        flat = [v for row in result.train for v in (row if isinstance(row, list) else [row]) if math.isfinite(v)]
        if flat:
            notes.append(f"training loss on the grid: {min(flat):.4g} to {max(flat):.4g}")
    return Report(title, ["optimizer", "lr", "final loss", "λmax", "2/lr", "λmax·lr", "against 2"], rows, notes)


def draw(result: LandscapeResult) -> Any:
    def plot(path: Any) -> None:
        from losslab.outputs.plots import Surface, landscape_plot

        landscape_plot(Surface(result.mode, result.axes, result.xs, result.ys, result.train, result.valid,
                               [(p.name, p.coords) for p in result.paths if p.coords], result.optimum), path)
    return plot


def terminal(result: LandscapeResult) -> str:
    from losslab.outputs.terminal_plot import curves

    if result.mode == "line":
        series = [("train", result.xs, result.train)]
        if result.valid is not None:
            series.append(("valid", result.xs, result.valid))
        return curves(series, title="loss along the line (t = 0 initial, 1 final weights)", xlabel="t")
    series = [(p.name, [c[0] for c in p.coords], [c[1] for c in p.coords]) for p in result.paths if p.coords]
    if result.optimum is not None:
        series.append(("optimum", [result.optimum[0]], [result.optimum[1]]))
    if not series:
        return ""
    return curves(series, title=f"paths on the plane ({result.axes[0]} across, {result.axes[1]} up)",
                  xlabel=result.axes[0])


def experiment(cfg: LandscapeConfig, *, json_out: bool = False, quiet: bool = False) -> tuple[Output, Where]:
    cfg = cfg.resolved()
    check_out_dir(cfg.out, ("history.csv", "result.json") + PLOTS)
    problem = build_problem(cfg.run)
    _data(problem)
    console = make_console(stderr=json_out)
    ctx = context(COMMAND, cfg, json_out, quiet)
    display = TrialsDisplay(console, quiet=quiet, label="optimizer")
    names = cfg.optims or (cfg.run.optim.name,)
    display.plan(list(names), 1)
    events = dispatcher(ctx, [display])
    with display:
        result = landscape(cfg, problem, events)
    plots = [("landscape.png", draw(result))] if result.status == "ok" else []
    return (Output(document(result), report(result), run_records([p.result for p in result.paths], "optimizer"),
                   [], result.status, plots, (lambda: terminal(result)) if result.status == "ok" else None,
                   result=result),
            Where(console, json_out, quiet, cfg.out, cfg.plot, events))


def main(cfg: LandscapeConfig, *, json_out: bool, quiet: bool) -> int:
    return finish(*experiment(cfg, json_out=json_out, quiet=quiet))

