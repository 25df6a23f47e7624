"""The house's import graph, every import counted (lazy ones inside functions too): no cycle, no back-arrow."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("qdrant_compat", "converters")

# lower layers never import the layers built on them (prefixes of module names)
FORBIDDEN = {
    ("qdrant_compat.errors", "qdrant_compat.enums", "qdrant_compat._registry", "qdrant_compat._config"):
        ("qdrant_compat",),  # the bottom: nothing of the house below them (errors may name enums)
    ("qdrant_compat.store", "qdrant_compat.metadata", "qdrant_compat.cards", "qdrant_compat.routing",
     "qdrant_compat.registry", "qdrant_compat.runtime", "qdrant_compat.data"):
        ("qdrant_compat.client", "qdrant_compat.upgrade", "qdrant_compat.cli", "qdrant_compat.training",
         "qdrant_compat.engines"),
    ("qdrant_compat.engines.base", "qdrant_compat.engines.local"):  # the engine contract sits below its users
        ("qdrant_compat.client", "qdrant_compat.upgrade", "qdrant_compat.cli", "qdrant_compat.training",
         "qdrant_compat.indexing"),
    ("qdrant_compat.client",): ("qdrant_compat.upgrade", "qdrant_compat.cli", "qdrant_compat.training"),
    ("qdrant_compat.upgrade", "qdrant_compat.engines", "qdrant_compat.training", "qdrant_compat.losses",
     "qdrant_compat.models", "converters"): ("qdrant_compat.cli",),
}
ALLOWED_AT_BOTTOM = {("qdrant_compat.errors", "qdrant_compat.enums")}  # errors name the enums in messages


def _under(mod: str, prefixes: tuple[str, ...]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the house that ``name`` imports. ``from pkg import sub`` depends on ``pkg.sub`` (not on the
    package's ``__init__``) when ``sub`` is a module."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(base)
    return {m for m in out if m in mods and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_graph_finds_a_cycle_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_house_has_no_import_cycle():
    graph = _graph()
    assert len(graph) > 80 and "qdrant_compat.upgrade.runner" in graph["qdrant_compat.upgrade"]
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_back_arrow_between_layers():
    graph = _graph()
    bad = []
    for lowers, uppers in FORBIDDEN.items():
        for mod, deps in graph.items():
            if not _under(mod, lowers):
                continue
            for d in deps:
                if _under(d, uppers) and not _under(d, lowers) and (mod, d) not in ALLOWED_AT_BOTTOM:
                    bad.append(f"{mod} -> {d}")
    assert not bad, "imports against the layering: " + ", ".join(sorted(bad))


def test_only_the_layouts_module_chooses_a_layout():
    """Blue-green vs in place is decided once (upgrade/layouts.py), never by an ``is_blue_green`` test elsewhere."""
    users = [m for m, p in _modules().items() if "is_blue_green(" in p.read_text()
             and m not in ("qdrant_compat.upgrade.bluegreen",)]
    assert users == [], users
