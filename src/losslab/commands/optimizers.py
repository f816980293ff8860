"""`losslab optimizers`: what `--optim` takes — losslab's names (torch.optim's catalogue), the optimizers of the
libraries installed here (pytorch-optimizer's by name, schedule-free's by import path) — with each one's class,
protocol, default rates and whether its trials stack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from losslab.outputs.display import Report, make_console
from losslab.outputs.files import versions

COMMAND = "optimizers"
SCHEDULEFREE = ("AdamWScheduleFree", "RAdamScheduleFree", "SGDScheduleFree")


@dataclass(frozen=True)
class OptimizersConfig:
    all: bool = False  # every class of the installed libraries, not only their count


def row(name: str, registered: bool) -> dict[str, Any]:
    """One optimizer as the listing shows it."""
    from losslab.components.optimizers import OPTIMIZERS, family_lr, kind, stacked_update

    k = kind(name)
    if registered:
        entry = OPTIMIZERS.lookup(name)
        rates, description = dict(entry.meta["default_lr"]), entry.description
    else:
        rates = {task: family_lr(k, task)[0] for task in ("regression", "classification")}
        description = family_lr(k, "regression")[1]
    why = k.protocol.stackable
    stacks = "batched update" if stacked_update(name) else "own step()" if why is None else f"no: {why}"
    return {"name": name, "class": k.label, "protocol": k.protocol.words() or ["plain step"], "tag": k.protocol.tag,
            "default_lr": rates, "stacks": stacks, "description": description}


def listing(cfg: OptimizersConfig) -> dict[str, Any]:
    from losslab.components.optimizers import LIBRARY, OPTIMIZERS, REFUSED, library

    rows = [row(name, True) for name in OPTIMIZERS.names()]
    found = library()
    libraries: dict[str, Any] = {LIBRARY: None if found is None else len(found)}
    if found is not None and cfg.all:
        rows += [row(name, False) for name in sorted(found) if name not in OPTIMIZERS.names()]
    try:
        import schedulefree  # noqa: F401

        libraries["schedulefree"] = len(SCHEDULEFREE)
        rows += [row(f"schedulefree:{name}", False) for name in SCHEDULEFREE]
    except ImportError:
        libraries["schedulefree"] = None
    return {"command": COMMAND, "status": "ok", "optimizers": rows, "libraries": libraries,
            "refused": dict(REFUSED), "versions": versions()}


def report(doc: dict[str, Any], every: bool) -> Report:
    rows = [[r["name"], "/".join(format(v, "g") for v in r["default_lr"].values()),
             "no" if r["stacks"].startswith("no") else r["stacks"].replace(" update", "").replace("()", ""), r["tag"]]
            for r in doc["optimizers"]]
    count = doc["libraries"].get("pytorch_optimizer")
    notes = [("pytorch-optimizer: not installed (pip install pytorch-optimizer, or losslab's extra: pip install "
              "'losslab[optimizers]')") if count is None else
             f"pytorch-optimizer: {count} more by name (--optim lion, --optim soap)"
             + ("" if every else "; `losslab optimizers --all` lists them")]
    notes += [f"refused: {name} {why}" for name, why in doc["refused"].items()]
    notes.append("any other class by import path: --optim package.module:Class (torch.optim:NAdam, myopt:Lion); "
                 "its constructor's other arguments with --optim-arg KEY=VALUE")
    notes.append("default lr: regression/classification; stacks: how trials of it train together (batched: an "
                 "update losslab wrote; own step: the class's step() over views of the stacked parameters; no: one "
                 "by one); protocol: plain (forward, backward, step), closure (LBFGS), two passes (SAM), "
                 "create_graph (a Hessian estimate), train/eval (schedule-free), routed (Muon), model (built from "
                 "the model); --json gives each one's class, protocol in words and why it does not stack")
    return Report("losslab optimizers: what --optim takes", ["name", "default lr", "stacks", "protocol"],
                  rows, notes, text=frozenset({0, 2, 3}))


def main(cfg: OptimizersConfig, *, json_out: bool, out: Optional[Any] = None) -> int:
    from losslab.commands.common import context, end_command
    from losslab.outputs.sinks import dispatcher

    events = dispatcher(context(COMMAND, cfg, json_out))
    doc = listing(cfg)
    report(doc, cfg.all).render(make_console(stderr=json_out))
    end_command(events, COMMAND, "ok", doc, json_out)
    return 0
