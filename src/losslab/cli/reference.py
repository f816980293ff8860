"""The documentation site's option reference, written from the CLI's options: `python -m losslab.cli.reference >
docs/reference/options.md` writes every option's full description (`--help` shows one line of it) by panel, and
which commands take it; a test keeps the file equal to what this prints."""

from __future__ import annotations

from typing import Any


def _default(value: Any) -> str:
    if value is None or value is False:
        return ""
    return f"`{value}`" if not isinstance(value, bool) else "on"


def _defaults(name: str, commands: list[str], signatures: Any) -> str:
    """The option's default: one value, or the usual one and the commands whose own differs."""
    from collections import Counter

    values = {c: _default(signatures[c][1][name]) for c in commands}
    usual = Counter(values.values()).most_common(1)[0][0]
    other = [f"{c}: {v or 'none'}" for c, v in sorted(values.items()) if v != usual]
    return usual + (f" ({'; '.join(other)})" if other else "")


def page() -> str:
    from losslab.cli.options import OPTS, PANELS, SIGNATURES, panel
    from losslab.cli.typer_app import WORKFLOW  # (importing it registers every command's options)

    takers: dict[str, list[str]] = {}
    for command, (names, _) in SIGNATURES.items():
        if command not in WORKFLOW:  # (a command a test registered for itself)
            continue
        for name in names:
            takers.setdefault(name, []).append(command)
    lines = ["# Options", "",
             "Every option of every command, with its full description (`losslab COMMAND --help` shows one line "
             "of each, for the command's task). Written by `python -m losslab.cli.reference`; a test keeps this "
             "page current.", ""]
    for title in [*PANELS, "Output"]:
        listed = [n for n in OPTS if panel(n) == title and n in takers and OPTS[n].flags[0].startswith("-")]
        if not listed:
            continue
        lines += [f"## {title}", "", "| option | default | commands | description |", "|---|---|---|---|"]
        for name in listed:
            opt = OPTS[name]
            flags = " / ".join(f"`{f}`" for f in opt.flags)
            text = opt.help.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {flags} | {_defaults(name, takers[name], SIGNATURES)} | {', '.join(sorted(takers[name]))} "
                         f"| {text} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(page(), end="")
