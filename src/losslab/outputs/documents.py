"""The result documents that gate, diff and replay read back: checked field by field before anything uses them,
so that a damaged or hand-edited result.json is one line naming the file and the field, never an internal error
or a silent pass."""

from __future__ import annotations

import math
from typing import Any

from losslab.errors import ConfigError

# the types each top-level field has where a document holds it (None: JSON null allowed)
FIELDS: dict[str, tuple[type, ...]] = {
    "command": (str,), "status": (str,), "task": (str,), "config": (dict,), "versions": (dict,),
    "invocation": (dict,), "params": (dict,), "true_params": (dict, type(None)), "optimum": (dict, type(None)),
    "final_loss": (int, float, type(None)), "epochs_run": (int,), "optimizers": (dict,), "losses": (dict,),
    "rates": (list,), "results": (list,), "runs": (list,), "expectations": (list,), "diagnosis": (list,),
    "history": (list,), "suggestions": (dict,),
}


def version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def check_document(doc: Any, path: str, role: str) -> dict[str, Any]:
    """`doc` as a result document this losslab can read: a table whose fields have the types losslab writes,
    written by this version or an older one, and a finished run's final loss a number."""
    from losslab.version import __version__

    if not isinstance(doc, dict):
        raise ConfigError(role, f"{path} is not a losslab result (a JSON table at the top is expected)")
    for key, kinds in FIELDS.items():
        if key in doc and (not isinstance(doc[key], kinds) or isinstance(doc[key], bool) and bool not in kinds):
            if key == "invocation":
                raise ConfigError(role, f"{path} has no 'invocation' to rerun (the field is "
                                  f"{type(doc[key]).__name__}, not a table)")
            want = " or ".join("null" if k is type(None) else {"dict": "a table", "list": "a list", "str": "text",
                                                                 "int": "a number", "float": "a number"}[k.__name__]
                               for k in kinds)
            raise ConfigError(role, f"{path}: field {key!r} must be {want} (got {type(doc[key]).__name__})")
    versions = doc.get("versions") or {}
    if not all(isinstance(v, str) for v in versions.values()):
        raise ConfigError(role, f"{path}: field 'versions' must be a table of version strings")
    written = versions.get("losslab") or ""
    if written and version_tuple(written) > version_tuple(__version__):
        raise ConfigError(role, f"{path} was written by losslab {written}, newer than this {__version__}: "
                          "upgrade losslab to read it")
    final = doc.get("final_loss")
    if doc.get("status") == "ok" and isinstance(final, (int, float)) and not math.isfinite(final):
        raise ConfigError(role, f"{path}: status 'ok' with final_loss {final}: a finished run's final loss is a "
                          "number (the file was edited or damaged)")
    return doc
