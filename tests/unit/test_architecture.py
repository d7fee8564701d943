"""lab's packages are layers: each imports only from the packages before it in LAYERS, and no
module imports another that (through any chain) imports it back. Read from the sources
with ast, nothing imported; imports inside functions count, those under
`if TYPE_CHECKING:` do not (they never run)."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "lab"
# Lowest first. lab/__init__.py, lab/pytest_plugin.py and lab.cli are the top.
LAYERS = ("core", "pptp", "model", "engines", "up", "diagnosis", "reports", "testing", "cli")


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted(LAB.rglob("*.py")):
        parts = list(path.relative_to(LAB.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


@functools.cache
def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: line}, lab's modules only."""
    mods = _modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_only(tree)
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                # `from pkg import mod` imports the module; `from mod import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].setdefault(target, node.lineno)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _layer(module: str) -> int:
    """Index in LAYERS; lab itself and lab.pytest_plugin sit at the top beside lab.cli."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return LAYERS.index("cli") if module in ("lab", "lab.pytest_plugin") else len(LAYERS)


def test_every_module_is_in_a_layer():
    stray = [m for m in import_graph() if _layer(m) == len(LAYERS) and m not in ("lab", "lab.pytest_plugin")]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_imports_only_go_down_the_layers():
    graph = import_graph()
    upward = [f"{m} (line {line}) imports {t}"
              for m, targets in graph.items() for t, line in targets.items() if _layer(t) > _layer(m)]
    assert not upward, "imports from a later layer (order: " + ", ".join(LAYERS) + "):\n" + "\n".join(upward)


def test_the_checks_find_what_they_look_for():
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert _layer("lab.core.errors") < _layer("lab.up.lifecycle") < _layer("lab.cli") == _layer("lab.pytest_plugin")
    assert _layer("lab.cli.labs") == _layer("lab.cli")  # the verb modules are the top too
    graph = import_graph()
    assert "lab.core.errors" in graph["lab.up.lifecycle"]  # relative imports resolved
    assert "lab.up.lifecycle" in graph["lab.cli.labs"]  # imports inside functions count
