"""The package's shape: imports point one way (front-ends on top, shared machinery below), no
import cycles between files, and no function longer than 80 lines. Every import counts, lazy ones
inside functions included: they tie modules together all the same."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "llmrec"

# Bottom to top: a module may import only from its own sub-package or from one listed before it.
LAYERS = ("llmrec", "errors", "registry", "settings", "assets", "config", "data", "eval", "prompts", "sid", "baselines",
          "models", "backends", "scoring", "train", "content", "kg", "service", "jobs", "chat", "serve", "recipes",
          "cli", "__main__")  # __main__: `python -m llmrec`, on top of the command line


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The llmrec modules `path` imports (a name is cut back to the longest module it names)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
                break
    return found


def graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports(f, modules) for f in files}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "llmrec"


def test_imports_point_down_the_layers():
    g = graph()
    assert {layer(m) for m in g} <= set(LAYERS), f"a package missing from LAYERS: {({layer(m) for m in g}) - set(LAYERS)}"
    upward = sorted(f"{a} -> {b}" for a, deps in g.items() for b in deps
                    if layer(a) != layer(b) and LAYERS.index(layer(b)) > LAYERS.index(layer(a)))
    assert not upward, "imports from a lower layer up to a higher one:\n" + "\n".join(upward)


def test_no_import_cycles_between_files():
    g = graph()
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    g = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in g.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycle.extend(path[path.index(d):] + [m, d] if d in path else [m, d])
                return True
            if d not in state and visit(d, path + [m]):
                return True
        state[m] = 2
        return False

    for m in sorted(g):
        if m not in state and visit(m, []):
            break
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_function_longer_than_80_lines():
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "split these functions:\n" + "\n".join(long)


def test_the_checks_see_what_they_check():
    """The graph is not empty and knows a real edge in each direction the layering forbids."""
    g = graph()
    assert "llmrec.scoring.build" in g["llmrec.service.ranking"] and "llmrec.service.ranking" in g["llmrec.chat.engine"]
    assert all(layer(d) != "serve" for d in g["llmrec.chat.engine"])
    assert len(g) > 80
