"""The layout keeps its promises (DESIGN.md): every import of every module, read from its source,
goes down the layers `errors, config -> models, parallel -> probe -> worlds -> train -> sweep,
report, perf, cost -> scripts`; a world imports only itself, worlds/base.py and the layers below it
(never train/, sweep, report or scripts); no modules import each other in a circle; no module
reaches into another's private names."""
import ast
import functools
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Layers from the bottom; a module belongs to the longest prefix listed.
LAYERS = (
    ("lmphys", "lmphys.errors", "lmphys.config", "lmphys.cli"),
    ("lmphys.models", "lmphys.parallel"),
    ("lmphys.probe",),
    ("lmphys.worlds",),
    ("lmphys.train",),
    ("lmphys.sweep", "lmphys.cluster", "lmphys.report", "lmphys.perf", "lmphys.cost"),
)
# What a world's modules may import besides their own world and lmphys.worlds.base.
WORLD_MAY_IMPORT = ("lmphys.errors", "lmphys.config", "lmphys.models", "lmphys.probe")


def module_files() -> dict[str, str]:
    """{dotted module name: path} of the package and the scripts."""
    found = {}
    for top in ("lmphys", "scripts"):
        for folder, _, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = path
    return found


MODULES = module_files()


def _resolve(module: str, name: str | None) -> str:
    """`from module import name` imports the submodule module.name when there is one."""
    return f"{module}.{name}" if name and f"{module}.{name}" in MODULES else module


def imports_in(source: str) -> tuple[tuple[str, int], ...]:
    """(imported lmphys module, line) for every import statement anywhere in `source`, inside
    functions too: an import made on first use is still a dependency."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("lmphys")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmphys"):
            found += [(_resolve(node.module, alias.name), node.lineno) for alias in node.names]
    return tuple(found)


@functools.cache
def imports_of(module: str) -> tuple[tuple[str, int], ...]:
    return imports_in(open(MODULES[module]).read())


def upward_imports(module: str, imports) -> list[str]:
    return [f"{module} (line {line}) imports {imported}, a layer above it"
            for imported, line in imports if layer(imported) > layer(module)]


def foreign_world_imports(module: str, imports) -> list[str]:
    allowed = (world_of(module), "lmphys.worlds.base") + WORLD_MAY_IMPORT
    return [f"{module} (line {line}) imports {imported}: a world may import only {', '.join(allowed)}"
            for imported, line in imports if not any(_within(imported, prefix) for prefix in allowed)]


def layer(module: str) -> int:
    best, best_length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def world_of(module: str) -> str | None:
    """lmphys.worlds.<world> for a module of a world package."""
    parts = module.split(".")
    return ".".join(parts[:3]) if len(parts) >= 3 and parts[:2] == ["lmphys", "worlds"] and parts[2] != "base" else None


PACKAGE = sorted(name for name in MODULES if name.startswith("lmphys"))


@pytest.mark.parametrize("module", PACKAGE)
def test_imports_go_down_the_layers(module):
    assert upward_imports(module, imports_of(module)) == []


@pytest.mark.parametrize("module", [name for name in PACKAGE if world_of(name)])
def test_a_world_imports_only_itself_and_the_layers_below(module):
    assert foreign_world_imports(module, imports_of(module)) == []


def test_no_module_imports_another_in_a_circle():
    graph = {module: sorted({imported for imported, _ in imports_of(module) if imported in MODULES and imported != module})
             for module in MODULES}
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for imported in graph[module]:
            if state.get(imported) == "open":
                cycle = path[path.index(imported):] + [imported]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def private_uses(module: str, source: str) -> list[str]:
    """Uses of another lmphys module's private names: imported by name, or read as module._name."""
    tree = ast.parse(source)
    found, bound = [], {}  # bound: local name -> the lmphys module it refers to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmphys"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{module} (line {node.lineno}) imports the private {node.module}.{alias.name}")
                target = _resolve(node.module, alias.name)
                if target != node.module:
                    bound[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lmphys") and alias.asname:
                    bound[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{module} (line {node.lineno}) uses {bound[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_uses_another_modules_private_names(module):
    assert private_uses(module, open(MODULES[module]).read()) == []


def test_the_checks_catch_violations():
    """The rules read real import statements, lazy ones included."""
    lazy_train = "def analyse():\n    from lmphys.train import loop\n"
    assert upward_imports("lmphys.worlds.cfg.task", imports_in(lazy_train)) != []
    assert foreign_world_imports("lmphys.worlds.cfg.task", imports_in("from lmphys.worlds.bio import people")) != []
    assert foreign_world_imports("lmphys.worlds.cfg.task", imports_in("from lmphys import parallel")) != []
    assert foreign_world_imports("lmphys.worlds.cfg.task", imports_in("from lmphys.worlds.cfg import measure")) == []
    assert upward_imports("lmphys.config", imports_in("import lmphys.models.transformer")) != []
    assert private_uses("scripts.probe", "from lmphys.train import loop\nloop._setup(config)\n") != []
    assert private_uses("scripts.probe", "from lmphys.train.loop import _setup\n") != []
    assert private_uses("scripts.probe", "from lmphys.train import runs\nruns.build(config)\n") == []
