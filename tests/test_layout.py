"""The package's shape (docs/layout.md): stage folders without import cycles, modules of one job each, a layout
page true to the tree, and the pre-folder module names (kinject.MOVED) used only by scripts/."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import kinject

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "kinject"
LAYOUT = ROOT / "docs" / "layout.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """The kinject modules a module imports anywhere in it (inside functions too): ``from kinject.a import b``
    counts kinject.a.b where that is a module, else kinject.a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kinject")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kinject") and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {name for name in found if name in MODULES}


def import_graph() -> dict[str, set[str]]:
    # a package's __init__ is imported before each of its modules; it is not an edge of the stages' graph
    return {name: {m for m in imports(path) if m != name and m != "kinject"} for name, path in MODULES.items()}


def test_no_import_cycle_even_inside_functions():
    try:
        tuple(TopologicalSorter(import_graph()).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_cycle_check_finds_a_cycle():
    """The check above on a graph with a cycle hidden in a function-level import, as corpus <-> questions was."""
    graph = {"kinject.a": {"kinject.b"}, "kinject.b": {"kinject.c"}, "kinject.c": {"kinject.a"}}
    with pytest.raises(CycleError):
        tuple(TopologicalSorter(graph).static_order())


def test_old_module_names_only_in_scripts():
    """kinject.MOVED keeps scripts/*.py unchanged (a newer script re-runs its rule's finished jobs); everything
    else imports the stage folders' names."""
    old = re.compile(r"\bkinject\.(" + "|".join(kinject.MOVED) + r")\b(?!\.)|from kinject import (" + "|".join(kinject.MOVED) + r")\b")
    offenders = []
    for folder in ("src", "tests", "bench", "rules"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".smk") and path.name != "__init__.py" and path != Path(__file__):
                offenders += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                              if old.search(line) and not line.lstrip().startswith("#")]
    assert not offenders, offenders


def test_scripts_imports_resolve():
    """Every name a script imports exists, under its old module name or its new one."""
    import importlib

    for path in sorted((ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("kinject"):
                module = importlib.import_module(node.module)
                missing = [a.name for a in node.names if not hasattr(module, a.name)]
                assert not missing, f"{path.name}: {node.module} has no {missing}"


def test_the_layout_page_names_every_module_and_rule_file():
    """docs/layout.md names every module of the package (by its name in its folder's list) and every rule file."""
    text = LAYOUT.read_text()
    modules = sorted({path.stem for path in MODULES.values() if path.name != "__init__.py"})
    missing = [m for m in modules if f"`{m}`" not in text]
    assert not missing, f"docs/layout.md does not name {missing}"
    folders = sorted({p.parent.name for p in SRC.rglob("*/__init__.py")})
    assert not [f for f in folders if f"`{f}/`" not in text], folders
    rules = [p.name for p in sorted((ROOT / "rules").glob("*.smk"))]
    assert not [r for r in rules if f"`{r}`" not in text], rules
