"""Imports point down the flow: no cycles between modules, and no import from a lower layer to a higher one.

Every `import` of the project's own packages counts, those inside functions too. Importing `a.b.c` also runs the
`__init__` of `a.b`, so an import reaches that package as well. The layers, lowest first (docs/architecture.md):
"""
import ast
import os
from typing import Dict, List, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("fsdp2_core", "megatron_compat")

# Layer units, lowest first; units on one line sit beside each other and import neither one another.
LAYERS: List[Tuple[str, ...]] = [
    ("fsdp2_core.errors",),
    ("fsdp2_core.config",),
    ("fsdp2_core.rank_env",),
    ("fsdp2_core.device",),
    ("fsdp2_core.kernels",),
    ("fsdp2_core.data", "fsdp2_core.models"),
    ("fsdp2_core.parallel",),
    ("fsdp2_core.quant",),
    ("fsdp2_core.train", "fsdp2_core.checkpoint"),
    ("fsdp2_core.testing",),
    ("megatron_compat",),
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def project_modules() -> Dict[str, str]:
    """Dotted module name -> file, for every module of the packages (a package is its __init__)."""
    modules = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    modules[dotted.removesuffix(".__init__")] = path
    return modules


def _targets(module: str, node, is_package: bool, modules: Dict[str, str]) -> List[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[:len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = []
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.append(name)
    return found


def import_edges() -> List[Tuple[str, str, int]]:
    """(importer, imported module, line) for every import of a project module, function-level ones included."""
    modules = project_modules()
    edges = []
    for module, path in modules.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node, path.endswith("__init__.py"), modules):
                    if target != module:
                        edges.append((module, target, node.lineno))
    return edges


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "megatron_compat" else ".".join(parts[:2])


def _packages_run(module: str) -> List[str]:
    """`a.b.c` runs the __init__ of `a` and `a.b` before itself."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))] + [module]


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m in project_modules()} - {"fsdp2_core"}
    assert units <= set(RANK), f"place these in LAYERS: {sorted(units - set(RANK))}"


def test_imports_point_down_the_flow():
    wrong = []
    for importer, target, line in import_edges():
        here = unit_of(importer)
        for reached in _packages_run(target):
            there = unit_of(reached)
            if reached == "fsdp2_core" or there == here:
                continue
            if RANK.get(there, -1) >= RANK.get(here, -1):
                wrong.append(f"{importer}:{line} imports {target} ({there} is not below {here})")
    assert not wrong, "imports up or across the flow:\n" + "\n".join(sorted(set(wrong)))


def test_no_import_cycles():
    graph: Dict[str, Set[str]] = {}
    for importer, target, _ in import_edges():
        graph.setdefault(importer, set()).add(target)
    cycles = _strongly_connected(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(sorted(c)) for c in cycles)


def _strongly_connected(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Tarjan's algorithm, iteratively; components of more than one module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found = []
    counter = 0
    for start in list(graph):
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_check_sees_a_cycle_and_an_upward_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in _strongly_connected(graph)] == [["a", "b", "c"]]
    assert RANK[unit_of("fsdp2_core.models.moe")] < RANK[unit_of("fsdp2_core.parallel.expert_parallel")]
