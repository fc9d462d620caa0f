"""The layout's floors (README, DESIGN §3): a module imports only from its own folder or a
floor below it, never in a circle; nothing imports the CLI, and the checker (prove/) never
imports the API above it."""
import ast
from pathlib import Path

import symgrad

ROOT = Path(symgrad.__file__).resolve().parent

#: bottom first; a module may import from its own floor's folder and from floors before it
FLOORS = [
    ["errors", "version"], ["tensor"], ["scalar"], ["fn"], ["ops"], ["graph"], ["prove"],
    ["models"], ["api"], ["intervals", "testing"], ["frameworks"], ["torch", "jax"], ["mutants"], ["gate"],
    ["report", "pytest_plugin"], ["cli"],
]


def _modules():
    mods = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(("symgrad",) + parts)] = f
    return mods


def _imports(mods):
    """module → the symgrad modules it imports (lazy imports inside functions count)."""
    edges = {}
    for m, f in mods.items():
        is_pkg = f.name == "__init__.py"
        out = set()
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if is_pkg else m.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t.startswith("symgrad") and t != m and not m.startswith(t + "."):
                    out.add(t)
                    break
        edges[m] = out
    return edges


def _floor(module: str):
    top = module.split(".")[1] if "." in module else None
    for k, names in enumerate(FLOORS):
        if top in names:
            return k
    return None


def test_every_module_has_a_floor():
    assert [m for m in _modules() if m != "symgrad" and _floor(m) is None] == []


def test_no_module_imports_upward_and_nothing_imports_the_cli():
    edges = _imports(_modules())
    upward = [(m, t) for m, ts in edges.items() if m != "symgrad" for t in ts
              if _floor(t) is None or _floor(t) > _floor(m)]
    assert upward == []
    assert [m for m, ts in edges.items() if "symgrad.cli" in ts] == []
    assert [m for m, ts in edges.items() if m.startswith("symgrad.prove") and
            "symgrad.api" in ts] == []


def test_no_import_circles():
    edges = _imports(_modules())
    state = {}

    def visit(m, path):
        state[m] = "open"
        for t in edges.get(m, ()):
            if state.get(t) == "open":
                raise AssertionError("import circle: " + " → ".join(path + [m, t]))
            if t not in state:
                visit(t, path + [m])
        state[m] = "done"

    for m in edges:
        if m not in state:
            visit(m, [])
