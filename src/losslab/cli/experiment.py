"""Experiment files: `--config FILE.toml` (a command's options from a file, the command line overriding it) and
`--print-config` (the options a run would use, as TOML that --config reads back unchanged).

Keys are the option names as on the command line without the dashes (`lr`, `batch-size`, `json`), in a table
named after the command (`[regress]`) or at the top level; stdlib `tomllib` reads them.
"""

from __future__ import annotations

import typing
from typing import Any, Mapping, Sequence

from losslab import toml_text
from losslab.errors import ConfigError

NOT_IN_FILE = ("config", "print_config")  # what a file cannot set
DISPLAY = ("json_out", "quiet", "plot")  # how a run is shown, not what it is: --print-config leaves them out
TABLES: list[str] = []  # the commands whose options a file may give, each in a table of its name (cli.options)


def key_of(opts: Mapping[str, Any], name: str) -> str:
    """An option's key in a file: its first flag without the dashes (`batch-size`, `json`)."""
    return opts[name].flags[0].split("/")[0].lstrip("-")


def _base(tp: Any) -> Any:
    """int, float, str, bool or list for an option's annotation (Optional[...] unwrapped)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union and len(args) == 1:
        tp = args[0]
    return list if typing.get_origin(tp) is list else tp


def _coerce(opts: Mapping[str, Any], name: str, value: Any, where: str) -> Any:
    want = _base(opts[name].type)
    key = key_of(opts, name)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is str and isinstance(value, list) and value and all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)  # a TOML array for a comma list: optims = ["sgd", "adam"]
    if want is list:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(v, str) for v in items):
            return items
        raise ConfigError("--config", f"{where}: {key} must be a string or a list of strings (got {value!r})")
    if want is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. features = 3, true-w = 2
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError("--config", f"{where}: {key} must be {getattr(want, '__name__', want)} (got "
                          f"{type(value).__name__} {value!r})")
    return value


CONFIG_BYTES = 1 << 20  # a config file is a few lines: 1 MiB is far beyond any real one


def read(path: str, command: str, names: Sequence[str], opts: Mapping[str, Any]) -> dict[str, Any]:
    """The options a file gives `command`, by option name; unknown keys and wrong types refused, naming them."""
    import tomllib

    from losslab.config.checks import read_text_file

    try:
        data = tomllib.loads(read_text_file(path, "--config", CONFIG_BYTES, "a losslab config file"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for table in tables:
        if table not in TABLES:
            raise ConfigError("--config", f"{path}: unknown table [{table}]; tables are named after commands: "
                              f"{', '.join(TABLES)}")
    if tables and command not in tables and not top:  # a file for other commands: nothing of it applies here
        raise ConfigError("--config", f"{path} has no [{command}] table (it has: "
                          f"{', '.join(f'[{t}]' for t in tables)}) and no top-level keys")
    given = {**top, **tables.get(command, {})}
    by_key = {key_of(opts, n): n for n in names if n not in NOT_IN_FILE}
    by_key.update({n: n for n in names if n not in NOT_IN_FILE})
    out = {}
    where = f"{path} [{command}]" if command in tables else str(path)
    for key, value in given.items():
        if key not in by_key:
            raise ConfigError("--config", f"{where}: unknown key {key!r} for losslab {command}; its options: "
                              f"{', '.join(sorted(key_of(opts, n) for n in names if n not in NOT_IN_FILE))}")
        out[by_key[key]] = _coerce(opts, by_key[key], value, where)
    return out


def _from_command_line(name: str, value: Any, default: Any) -> bool:
    """Whether an option was given on the command line (click's parameter source; typer vendors click)."""
    try:
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context

        return get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE
    except Exception:  # another typer layout: a value other than the default was given
        return value != default


def merged(values: dict[str, Any], names: Sequence[str], opts: Mapping[str, Any], command: str,
           defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The command's values with a --config file's under those given on the command line."""
    path = values.get("config")
    if path is None:
        return values
    values = dict(values)
    for name, value in read(path, command, names, opts).items():
        if not _from_command_line(name, values.get(name), defaults.get(name)):
            values[name] = value
    return values


def dumps(values: Mapping[str, Any], opts: Mapping[str, Any], command: str) -> str:
    """The run's experiment settings as a TOML table for its command; unset options (None) and how a run is shown
    (--json, --quiet, --plot) are left out."""
    lines = [f"# losslab {command}: read back with  losslab {command} --config FILE", f"[{command}]"]
    for name, value in values.items():
        if name in NOT_IN_FILE or name in DISPLAY or value is None:
            continue
        lines.append(f"{toml_text.key(key_of(opts, name))} = {toml_text.value(value)}")
    return "\n".join(lines) + "\n"
