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


def test_unknown_attribute_is_an_attribute_error():
    try:
        workbench.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
