"""What a trained model needs to be used again: its weights, how to build it (a built-in name and its
architecture, or a user's import path and the shapes it was given) and how its inputs were prepared (a table's
feature columns, the normalisation, the class names). `--save` writes it; `losslab predict` reads it with
`torch.load(weights_only=True)` (plain data and tensors only: nothing in the file runs)."""

from __future__ import annotations

from typing import Any

import torch

from losslab.components.losses import wants_log_softmax
from losslab.components.models import build_classifier, build_user_model, is_user_model
from losslab.errors import USER_ERRORS, ConfigError

FORMAT = "losslab-checkpoint-1"


def model_entry(problem: Any) -> dict[str, Any]:
    """The problem's model as a checkpoint describes it (besides the weights)."""
    cfg = problem.cfg
    if problem.task == "regression":
        data, scaling = problem.data, problem.scaling
        return {"task": "regression", "model": cfg.model, "input_shape": [data.features], "outputs": 1,
                "features": list(data.feature_names) if data.feature_names else None, "target": data.target_name,
                "scaling": scaling.to_dict() if scaling is not None else None, "log_softmax": False}
    data = problem.data
    if problem.task == "language-model":
        tokenizer = getattr(data.tokenizer, "chars", None)
        return {"task": "language-model", "model": cfg.model.name, "input_shape": [problem.block],
                "outputs": problem.vocab, "shape": vars(problem.shape()).copy(), "tokenizer": cfg.data.tokenizer,
                "vocabulary": tokenizer, "log_softmax": wants_log_softmax(cfg.loss.name)}
    return {"task": "classification", "model": cfg.model.name, "hidden": cfg.model.hidden,
            "architecture": cfg.model.architecture(), "input_shape": list(data.input_shape), "outputs": problem.k,
            "classes": list(data.classes), "features": data.features, "target": data.target,
            "mean": data.mean, "std": data.std, "log_softmax": wants_log_softmax(cfg.loss.name)}


def rebuild(ckpt: dict[str, Any], option: str = "--checkpoint", model: Any = None) -> torch.nn.Module:
    """The checkpoint's model with its weights, in eval mode; a model that no longer matches (a user's class
    changed since) is one line naming both. `model`: the class or factory a command line names (--model), used
    instead of the checkpoint's own entry (which is built only when it is an nn.Module class)."""
    from losslab.components.models import load_user_model
    from losslab.config import ModelConfig

    name, shape, outputs = ckpt["model"], tuple(ckpt["input_shape"]), int(ckpt["outputs"])
    lm = ckpt["task"] == "language-model"
    also = {"vocab_size": outputs, "block_size": shape[0]} if lm else None
    if model is not None:
        name = model
        model = build_user_model(model, shape, outputs, load_user_model(model), also)
    elif is_user_model(name):
        model = build_user_model(name, shape, outputs, module_class(name, option), also)
    elif lm:
        from losslab.components.lm_models import LMShape, build_lm

        model = build_lm(name, LMShape(**ckpt["shape"]))
    elif ckpt["task"] == "regression":
        model = torch.nn.Linear(shape[0], 1)
    else:
        arch = ckpt.get("architecture") or {}
        model = build_classifier(ModelConfig(name=name, hidden=ckpt.get("hidden", 128), **arch), shape, outputs)
    if ckpt.get("log_softmax"):
        layers = list(model) if isinstance(model, torch.nn.Sequential) else [model]
        model = torch.nn.Sequential(*layers, torch.nn.LogSoftmax(dim=-1))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = next((line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))),
                   lines[0] if lines else type(exc).__name__)
        raise ConfigError(option, f"the checkpoint's weights do not fit the model {name} builds now: {why}") from None
    return model.eval()


def module_class(spec: str, option: str) -> Any:
    """The nn.Module class a file's import path names, refused before anything is called unless it is one: a file
    can be tampered with, so the functions a command line may name (factories) are not taken from it."""
    import inspect

    from losslab.components.models import load_user_model

    try:
        obj = load_user_model(spec)
    except ConfigError as exc:
        raise ConfigError(option, f"the model it names: {exc.message}") from None
    if not (inspect.isclass(obj) and issubclass(obj, torch.nn.Module)):
        raise ConfigError(option, f"names {spec}, which is not an nn.Module class: a model entry read from a file is "
                          f"built only when it is one (nothing else in the file is called); if {spec} is your "
                          f"function that builds the model, name it yourself: --model {spec}")
    return obj


def read(path: str, option: str = "--checkpoint") -> dict[str, Any]:
    """A checkpoint file, as plain data (weights_only), checked for what prediction needs."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(option, f"no such file: {path}") from None
    except USER_ERRORS as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else "")
        raise ConfigError(option, f"cannot read {path} as plain data (weights_only): {type(exc).__name__}: "
                          f"{why}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ConfigError(option, f"{path} is not a losslab checkpoint")
    for key, kind in (("task", str), ("model", str), ("input_shape", list), ("outputs", int),
                      ("state_dict", dict)):
        if not isinstance(ckpt.get(key), kind):
            raise ConfigError(option, f"{path} has no {key!r} for prediction (written by an older losslab, or "
                              "damaged): train again with --save")
    return ckpt
