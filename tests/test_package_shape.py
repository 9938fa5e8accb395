"""The package's shape: cheap to import, core free of widgets, `__all__` honest."""

import pkgutil
import subprocess
import sys

import workbench
import workbench.core


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_workbench_loads_no_heavy_library():
    loaded = _loaded_after("import workbench")
    assert not loaded & {"torch", "ultralytics", "ipywidgets", "cv2", "pandas", "plotly"}


def test_core_modules_never_import_ipywidgets():
    names = [m.name for m in pkgutil.walk_packages(workbench.core.__path__, "workbench.core.")]
    assert "workbench.core.store.workspace" in names and "workbench.core.data.generate" in names
    loaded = _loaded_after("; ".join(f"import {name}" for name in names))
    assert "ipywidgets" not in loaded


def test_all_lists_exactly_the_public_names_and_each_resolves():
    for name in workbench.__all__:
        assert getattr(workbench, name) is not None
    public = {n for n in dir(workbench) if not n.startswith("_")} | {"__version__"}
    assert set(workbench.__all__) == public


def test_every_public_name_is_in_the_readme_reference_and_nothing_else_is():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Public names\n", 1)[1].split("\n### ", 1)[0]
    listed = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", section)
    assert len(listed) == len(set(listed)), "a name is listed twice"
    assert set(listed) == set(workbench.__all__) - {"__version__"}


def test_unknown_attribute_is_an_attribute_error():
    try:
        workbench.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_the_layer_contracts_hold():
    """import-linter reads the import graph (lazy imports included) against pyproject's layers and forbidden lists."""
    from pathlib import Path

    tool = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(tool)], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stdout[-3000:]
    assert "BROKEN" not in run.stdout and run.stdout.count("KEPT") >= 3


def test_there_are_no_import_cycles():
    import grimp

    graph = grimp.build_graph("workbench")
    cycles = sorted(
        (a, b)
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if b.startswith("workbench") and graph.chain_exists(importer=b, imported=a)
    )
    assert not cycles, cycles


def test_core_holds_only_layer_packages_and_base_modules():
    from pathlib import Path

    core = Path(workbench.core.__file__).parent
    flat = sorted(p.stem for p in core.glob("*.py"))
    assert flat == ["__init__", "environment", "errors", "offline", "options", "progress"]
    layers = sorted(p.name for p in core.iterdir() if (p / "__init__.py").is_file())
    expected = [
        *("advise", "bench", "data", "doctor", "measure", "models", "optimize", "report", "serve", "services"),
        *("store", "sweep"),
    ]
    assert layers == expected
    for module in core.rglob("*.py"):  # every module says in its first line what it is for
        first = module.read_text().lstrip().splitlines()[0]
        assert first.startswith('"""') and len(first) > 20, module


def test_an_explicit_user_setting_of_the_offline_switches_is_kept_and_named():
    import os

    code = (
        "import warnings; warnings.simplefilter('always'); import workbench.core, os; print(os.environ['YOLO_OFFLINE'])"
    )
    env = {**os.environ, "YOLO_OFFLINE": "0"}
    env.pop("YOLO_AUTOINSTALL", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.strip() == "0" and "YOLO_OFFLINE=0 is set in your environment and kept" in run.stderr
    unset = {k: v for k, v in env.items() if k != "YOLO_OFFLINE"}
    code = "import workbench.core, os; print(os.environ['YOLO_OFFLINE'], os.environ['YOLO_AUTOINSTALL'])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=unset, check=True)
    assert run.stdout.split() == ["1", "False"] and "kept" not in run.stderr
