"""No module reaches into another's private attributes: `x._name` (one leading underscore) is read or written only on
`self`/`cls` or where `_name` is defined in the same module, so a module's insides can change without breaking
another. What a module offers others it offers under a public name (a property, a method, a function).

Only genuine third-party private APIs that cannot be avoided are allowed, each with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

import workbench

ROOT = Path(workbench.__file__).parent

THIRD_PARTY = {
    # (path under workbench/, attribute): why there is no public way
    ("core/models/runners.py", "_get_ops_details"): "LiteRT's Interpreter lists each op's inputs nowhere else",
    ("core/optimize/qat.py", "_inference"): "Ultralytics' Detect head turns raw maps into boxes only there (whole)",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _assigned_names(statements) -> set[str]:
    names = set()
    for statement in statements:
        if isinstance(statement, ast.Assign):
            names |= {t.id for t in statement.targets if isinstance(t, ast.Name)}
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            names.add(statement.target.id)
    return names


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def defined_in(tree: ast.Module) -> set[str]:
    """Names the module defines: functions, classes, module and class-body assignments (dataclass fields
    included) and attributes it sets on `self` or `cls`."""
    names = _assigned_names(tree.body)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= _assigned_names(node.body)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _on_self(node):
            names.add(node.attr)
    return names


def private_reaches(path: Path) -> list[tuple[str, int, str]]:
    """(attribute, line, expression) of every `x._name` in the file whose `_name` belongs to another module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = defined_in(tree)
    return [
        (node.attr, node.lineno, ast.unparse(node))
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _private(node.attr) and not _on_self(node) and node.attr not in own
    ]


def test_no_module_reaches_into_another_modules_private_attributes():
    offenders, allowed_seen = [], set()
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for attribute, line, expression in private_reaches(path):
            if (relative, attribute) in THIRD_PARTY:
                allowed_seen.add((relative, attribute))
                continue
            offenders.append(f"workbench/{relative}:{line}: {expression}")
    assert not offenders, "private attributes of another module; give them a public name:\n" + "\n".join(offenders)
    assert allowed_seen == set(THIRD_PARTY), f"allowed but no longer used, remove: {set(THIRD_PARTY) - allowed_seen}"


def test_the_scan_sees_reads_and_writes_and_spares_what_a_module_owns(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "class A:\n"
        "    _field: int = 0\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def f(self, other):\n"
        "        return other._mine + other._field + self._theirs + other.__class__.__name__\n"
        "def g(runner):\n"
        "    runner._call = None\n"
        "    return runner._async\n"
    )
    assert [(a, line) for a, line, _ in private_reaches(source)] == [("_call", 8), ("_async", 9)]
