"""The package's shape is a contract: every import points down the layers, and there are no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "losslab"

# lowest first; a module may import its own layer or any layer below it, never one above
LAYERS = [
    {"losslab", "losslab.errors", "losslab.stats", "losslab.verdicts", "losslab.expect", "losslab.invocation",
     "losslab.toml_text", "losslab.stack", "losslab.limits", "losslab.version", "losslab.objects",
     "losslab.interrupt", "losslab.profiles", "losslab.search_spaces"},
    {"losslab.components"},
    {"losslab.config"},
    {"losslab.engine"},
    {"losslab.outputs"},
    {"losslab.commands"},
    {"losslab.cli", "losslab.api", "losslab.api_types"},
    {"losslab.__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    for rank, names in enumerate(LAYERS):
        if module in names or any(module.startswith(n + ".") for n in names if n != "losslab"):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """Every losslab module this file imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("losslab"):
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                found.add(name)
    return found


GRAPH = {name: imports(path, set(modules())) - {name} for name, path in modules().items()}


# the one upward import: `losslab.regress(...)` is the package's public face, loaded on first use
PUBLIC_FACE = {("losslab", "losslab.api")}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_layers(module):
    up = [dep for dep in GRAPH[module] if layer(dep) > layer(module) and (module, dep) not in PUBLIC_FACE]
    assert not up, f"{module} (layer {layer(module)}) imports modules above it: {up}"


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path (first == last), or [] when the graph has none."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return []


def test_no_import_cycles():
    cycle = find_cycle({name: {dep for dep in deps if (name, dep) not in PUBLIC_FACE} for name, deps in GRAPH.items()})
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path):
    """The walker must find what it claims to find: imports inside functions, and a planted cycle."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from losslab.commands.regress import run\n")
    b.write_text("import losslab.config\nfrom losslab.engine import runs\n")
    known = set(modules())
    assert imports(a, known) == {"losslab.commands.regress"}
    assert imports(b, known) == {"losslab.config", "losslab.engine", "losslab.engine.runs"}
    assert layer("losslab.commands.regress") > layer("losslab.engine.runs")
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y"}, "y": set()}) == []


def test_every_cli_command_has_one_command_module():
    """One module per command, and the table of training commands names theirs: the CLI registers each row."""
    import importlib

    from losslab.cli import app
    from losslab.commands.table import COMMANDS

    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    shared = ("__init__", "common", "table")  # (what every command module uses)
    files = {p.stem.replace("_", "-") for p in (ROOT / "commands").glob("*.py") if p.stem not in shared}
    files |= {p.parent.name.replace("_", "-") for p in (ROOT / "commands").glob("*/__init__.py")}  # (a package)
    assert names == files
    for row in COMMANDS:
        module = importlib.import_module(row.module)
        assert row.name in names and callable(module.main) and callable(module.experiment), row.name


def test_functions_stay_small():
    """No function in the package is 80 lines or longer, and none takes more than 8 parameters (self aside):
    a function that needs more is doing two jobs, or its parameters belong together in a dataclass."""
    long, wide = [], []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                count = len(params) - (1 if params and params[0].arg in ("self", "cls") else 0)
                where = f"{name}.{node.name}"
                if node.end_lineno - node.lineno + 1 >= 80:
                    long.append(where)
                if count > 8:
                    wide.append(where)
    assert not long and not wide, f"too long: {long}; too many parameters: {wide}"
