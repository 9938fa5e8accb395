"""Widget panels over the core functions, the comparison dashboard and the `Workbench` app (needs ipywidgets)."""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "Panel": "workbench.widgets.base",
    "ModelPanel": "workbench.widgets.panels",
    "AdvisorPanel": "workbench.widgets.advisor",
    "ExportPanel": "workbench.widgets.panels",
    "MeasurePanel": "workbench.widgets.panels",
    "PrunePanel": "workbench.widgets.optimize",
    "QuantizePanel": "workbench.widgets.optimize",
    "DistillPanel": "workbench.widgets.optimize",
    "PipelinePanel": "workbench.widgets.optimize",
    "SweepPanel": "workbench.widgets.sweep",
    "Dashboard": "workbench.widgets.dashboard",
    "DoctorPanel": "workbench.widgets.doctor",
    "MonitorPanel": "workbench.widgets.monitor",
    "MonitorTab": "workbench.widgets.monitor",
    "Workbench": "workbench.widgets.app",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        try:
            module = import_module(_EXPORTS[name])
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"{exc}; the widgets need the notebook extra: pip install 'deploy-workbench[notebook]'"
            ) from exc
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench.widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
