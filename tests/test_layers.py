"""advisor's modules form layers: no import cycle between modules, and no lower layer imports a
higher one. Read from the source (every import statement, the lazy ones inside functions and
the ``TYPE_CHECKING`` ones included), so a new upward import fails here, not in a user's
start-up."""

import ast
from collections import defaultdict
from pathlib import Path

import advisor

ROOT = Path(advisor.__file__).parent

#: Lowest first; a module may import its own layer and the layers below it. Names not listed
#: (``advisor``, ``advisor.__main__``) are the top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "paths", "progress", "cache", "devices"),
    ("download", "images", "networks", "metrics"),
    ("checkpoints", "sampling"),
    ("features",),
    ("other_measures", "compare", "finetuning", "runs"),
    ("ranking",),
    ("serve",),
    ("cli", "entry"),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["advisor", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the advisor modules it imports (``from P import name`` counts P.name when
    that is a module); edges to a module's own parent packages are left out (Python imports
    those first whatever the code says)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                if any(n in modules for n in names[1:]):
                    names = names[1:]  # `from pkg import submodule`: the submodule
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name in modules and name != module and not module.startswith(name + "."):
                    graph[module].add(name)
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER.get(parts[1], len(LAYERS)) if len(parts) > 1 else len(LAYERS)


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{a} -> {b}"
        for a, targets in _imports(_modules()).items()
        for b in targets
        if _layer(b) > _layer(a)
    ]
    assert not upward, upward


def test_every_top_level_module_has_a_layer():
    tops = {m.split(".")[1] for m in _modules() if m.count(".") >= 1}
    assert tops - set(LAYER) <= {"__main__"}, tops - set(LAYER)


def test_there_is_no_import_cycle_between_modules():
    graph = _imports(_modules())
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(_modules()):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_imports_are_absolute_so_this_reading_sees_them_all():
    relative = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in ROOT.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative, relative
