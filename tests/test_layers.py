"""One direction of flow: netfix's modules import only from their own layer or the layers below it, and no two
modules import each other (directly or around a loop), except inside one method family.

Every ``import`` statement in ``src/netfix`` counts, module-level or inside a function: a lazy import is still a
dependency. Layers, lowest first (data → scenario → train → method → evaluate → report): see :data:`LAYERS`.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "netfix"

# Lowest first. A module may import from its own layer and the layers below, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("errors", "_version", "registry", "validation", "streaming", "transforms", "card", "adapter", "_runtime",
                    "_tables", "_pareto", "recipe", "checks")),
    ("data", ("formats", "data", "scenarios")),
    ("models", ("models",)),
    ("gradient engine", ("_per_sample", "jacobian", "gradients", "distributed", "solvers")),
    ("training", ("train_fn", "training")),
    ("evaluation", ("outputs", "forget_score", "evaluation")),
    ("methods", ("editing", "edits", "edit_metrics", "forgetting", "mixed", "methods")),
    ("files", ("io", "ledger", "ledger_files")),
    ("jobs", ("bench", "report", "runs", "demo")),
    ("interfaces", ("", "cli", "__main__")),   # "": the package itself (netfix/__init__.py, the public API)
]
# A method family may span modules that call each other; each family is one folder under methods/, so no
# top-level unit needs grouping any more (the map stays for the cycle check's sake).
FAMILIES: dict[str, str] = {}
# Compatibility aliases of the families' old module paths: only the public package itself imports them.
ALIASES = {"editing", "edits", "edit_metrics", "forgetting", "mixed"}
# Method families: the layers below them never import these.
METHOD_FAMILIES = {"editing", "edits", "edit_metrics", "forgetting", "mixed", "methods"}


def _unit(module: str) -> str:
    """The top-level unit of a dotted module name inside netfix: ``netfix.methods.ogd`` -> ``methods``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The netfix modules ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    """Unit -> the units it imports (units: ``training``, ``methods``, ... and ``""`` for the package)."""
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        for target in _imports(name, path, modules):
            a, b = _unit(name), _unit(target)
            if a != b:
                edges.setdefault(a, set()).add(b)
    return edges


def _layer_of() -> dict[str, int]:
    return {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def test_every_module_has_a_layer():
    layer = _layer_of()
    missing = sorted({_unit(m) for m in _modules()} - set(layer))
    assert not missing, f"add these to a layer in LAYERS: {missing}"


def test_imports_flow_down_the_layers():
    layer, names = _layer_of(), [n for n, _ in LAYERS]
    up = [f"netfix.{a or '__init__'} ({names[layer[a]]}) imports netfix.{b} ({names[layer[b]]})"
          for a, targets in graph().items() for b in targets if layer[b] > layer[a]]
    assert not up, "imports against the flow:\n" + "\n".join(sorted(up))


def test_no_method_family_below_the_methods():
    layer = _layer_of()
    methods_layer = layer["methods"]
    bad = [f"netfix.{a} imports netfix.{b}" for a, targets in graph().items() for b in targets
           if layer[a] < methods_layer and b in METHOD_FAMILIES]
    assert not bad, "\n".join(bad)


def test_no_import_cycles_outside_a_family():
    edges: dict[str, set[str]] = {}
    for a, targets in graph().items():
        fa = FAMILIES.get(a, a)
        edges.setdefault(fa, set()).update(FAMILIES.get(b, b) for b in targets if FAMILIES.get(b, b) != fa)
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if seen.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in seen and (cycle := visit(nxt)):
                return cycle
        seen[node] = 2
        stack.pop()
        return None

    for start in sorted(edges):
        if start not in seen and (cycle := visit(start)):
            raise AssertionError("import cycle: " + " -> ".join(f"netfix.{c}" if c else "netfix" for c in cycle))


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path, monkeypatch):
    """The walker is not vacuous: it finds an import inside a function, and a cycle through it."""
    pkg = tmp_path / "netfix"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "training.py").write_text("def f():\n    from .forgetting import x\n")
    (pkg / "forgetting.py").write_text("from .training import f\n")
    monkeypatch.setattr(__import__(__name__), "SRC", pkg)
    assert graph() == {"training": {"forgetting"}, "forgetting": {"training"}}


# A method's module imports shared helpers (methods/_*.py) and the registry, not another method's module. These are
# the ones left to move (each shares a method's engine: retrain's recipe, unseen's distillation, random-label's
# relabelling, neggrad+'s batch cycling); the list may only shrink.
SIBLING_IMPORTS_LEFT = {("forget_relearn", "retrain"), ("reference_guided", "unseen"), ("salun", "random_label"),
                        ("unseen", "neggrad_plus")}


def test_methods_do_not_import_each_other():
    modules = _modules()
    found = set()
    for name, path in modules.items():
        parts = name.split(".")  # a family folder's modules (netfix.methods.X.Y) count as family X
        if len(parts) < 3 or parts[1] != "methods" or parts[2].startswith("_"):
            continue
        for target in _imports(name, path, modules):
            t = target.split(".")
            if len(t) >= 3 and t[1] == "methods" and not t[2].startswith("_") and t[2] != parts[2]:
                found.add((parts[2], t[2]))
    assert found <= SIBLING_IMPORTS_LEFT, f"a method imports another method's module: {sorted(found - SIBLING_IMPORTS_LEFT)}; " \
        "put the shared piece in methods/_common.py"


def test_only_the_public_package_imports_the_compatibility_aliases():
    """netfix.editing / edits / edit_metrics / forgetting / mixed re-export their family's folder for users; the
    code itself imports the folders."""
    modules = _modules()
    bad = [f"{name} imports {target}" for name, path in modules.items() if _unit(name) not in ALIASES | {""}
           for target in _imports(name, path, modules) if _unit(target) in ALIASES]
    assert not bad, "import from netfix.methods.<family> instead:\n" + "\n".join(sorted(bad))
