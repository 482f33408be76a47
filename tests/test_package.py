"""The package's shape: subpackages import only the ones before them in LAYERS, and no module imports itself back."""
import ast
from pathlib import Path

import l2l_core

ROOT = Path(l2l_core.__file__).parent
# top-level utilities, the job engine, then each concept, the chapters' experiments, their presentation, and last the
# drivers that run the whole book; a layer may import from those before it only (README, "Layout")
LAYERS = ["top", "runtime", "optimizers", "tasks", "evaluation", "training", "errata", "experiments", "book", "drivers"]
# runtime's drivers (``make reproduce``, its book build and its scaling estimate) run everything else, so they come last
DRIVERS = {"l2l_core.runtime.reproduce", "l2l_core.runtime.book_build", "l2l_core.runtime.scaling"}


def _imports() -> dict[str, set[str]]:
    """module -> l2l_core modules it imports, at the top or inside a function (a deferred import is still a
    dependency)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("l2l_core"):
                for alias in node.names:  # "from l2l_core.optimizers import fused" imports the module fused
                    sub = f"{node.module}.{alias.name}"
                    is_module = (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").is_file() or \
                        (ROOT.parent / sub.replace(".", "/")).is_dir()
                    found.add(sub if is_module else node.module)
        out[module] = found
    return out


def _layer(module: str) -> str:
    if module in DRIVERS:
        return "drivers"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (ROOT / parts[1]).is_dir()) else "top"


def test_subpackages_import_only_earlier_layers():
    wrong = [(a, b) for a, targets in _imports().items() for b in targets
             if LAYERS.index(_layer(b)) > LAYERS.index(_layer(a))]
    assert not wrong, f"imports against the layering {LAYERS}: {wrong}"


def test_no_import_cycle():
    imports = _imports()
    graph = {m: {t for t in ts if t in imports} for m, ts in imports.items()}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for t in graph.get(m, ()):
            if state.get(t) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(path + [m, t])}")
            if t not in state:
                visit(t, path + [m])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [])


def test_no_module_is_over_300_lines_without_saying_why():
    """A long module states its reason in its docstring ("Over 300 lines on purpose: ...")."""
    import ast

    root = Path(l2l_core.__file__).parent
    long = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 300 and "Over 300 lines on purpose" not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(str(path.relative_to(root)))
    assert not long, f"modules over 300 lines with no stated reason: {long}"
