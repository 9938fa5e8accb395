"""ARCHITECTURE.md against the folders and the import contracts; the size limits that keep the rooms walled."""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"
PAGE = (ROOT / "ARCHITECTURE.md").read_text()
MAX_LINES = 500  # a core module longer than this has two concerns in it
MAX_MODULES = 10  # a package with more modules than this gets sub-folders
WINDOW = 6  # lines: a block this long written twice across modules is a duplicate


def _packages() -> set[str]:
    found = {p.parent.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("__init__.py")}
    return {"workbench/" if name == "." else f"{name}/" for name in found}


def _table_rows() -> dict[str, str]:
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \|$", PAGE, flags=re.M)
    return dict(rows)


def test_every_package_has_one_sentence_and_every_sentence_a_package():
    rows = _table_rows()
    assert len(rows) == len(re.findall(r"^\| `", PAGE, flags=re.M)), "a package is listed twice"
    assert set(rows) == _packages(), f"only on the page: {set(rows) - _packages()}; only in the tree: " + str(
        _packages() - set(rows)
    )
    assert all(len(text.split()) >= 5 for text in rows.values())


def _drawn_layers() -> list[str]:
    """The core's layers as the page's diagram draws them, highest first (an `a | b` group as one layer)."""
    drawing = PAGE.split("```")[1]
    core = drawing[drawing.index("core/") :].splitlines()
    layers = []
    for line in core:
        name = line.replace("core/", "", 1).split()[0] if line.strip() else ""
        group = re.search(r"[a-z]+(?: \| [a-z]+)+", line)
        layers.append(group.group(0) if name in ("capabilities", "base") and group else name)
    return [layer for layer in layers if layer]


def test_the_diagram_draws_the_core_contract_in_order():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if c.get("containers") == ["workbench.core"])
    assert _drawn_layers() == core["layers"]
    independent = next(c for c in contracts if c["type"] == "independence")
    assert [m.rpartition(".")[2] for m in independent["modules"]] == core["layers"][3].split(" | ")


def test_no_core_module_is_over_the_line_limit():
    long = {
        p.relative_to(ROOT).as_posix(): n
        for p in (PACKAGE / "core").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these along a real seam: {long}"


def test_no_package_holds_more_modules_than_a_room_should():
    crowded = {}
    for init in PACKAGE.rglob("__init__.py"):
        modules = [p for p in init.parent.glob("*.py") if p.name != "__init__.py"]
        if len(modules) > MAX_MODULES:
            crowded[init.parent.relative_to(ROOT).as_posix()] = len(modules)
    assert not crowded, f"give these sub-folders: {crowded}"


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines that carry code: no blanks, comments, imports, lone brackets or docstring quotes."""
    kept = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = " ".join(line.split())
        if not text or text.startswith(("#", "import ", "from ", '"""')) or not re.search(r"\w", text):
            continue
        kept.append((number, text))
    return kept


def duplicated_blocks(paths: list[Path], root: Path = ROOT) -> list[str]:
    """Blocks of WINDOW code lines that stand, word for word, in two or more modules (places relative to root)."""
    places = defaultdict(set)
    for path in paths:
        lines = _code_lines(path)
        for start in range(len(lines) - WINDOW + 1):
            block = tuple(text for _, text in lines[start : start + WINDOW])
            places[block].add(f"{path.relative_to(root).as_posix()}:{lines[start][0]}")
    found = []
    for block, where in places.items():
        files = {w.partition(":")[0] for w in where}
        if len(files) > 1:
            found.append(f"{sorted(where)}: {block[0]} ...")
    return sorted(found)


def test_the_duplicate_finder_finds_a_copied_block(tmp_path):
    body = "\n".join(f"    value_{i} = compute({i}) + offset" for i in range(WINDOW))
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(f"def f(offset):\n{body}\n    return value_0\n")
    (tmp_path / "c.py").write_text(f"def g(offset):\n{body.replace('offset', 'other')}\n")
    found = duplicated_blocks(sorted(tmp_path.glob("*.py")), tmp_path)
    assert found and all("a.py:" in f and "b.py:" in f and "c.py" not in f for f in found)


def test_no_block_of_six_lines_is_written_twice_across_modules():
    found = duplicated_blocks(sorted(PACKAGE.rglob("*.py")))
    assert not found, "write these once and call them:\n" + "\n".join(found[:20])
