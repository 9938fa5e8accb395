"""Deploy Workbench: take a trained Ultralytics YOLO detector to deployment, measured on your machine.

Importing this package is cheap: each name below is imported from its module on first use, so torch,
Ultralytics and ipywidgets load only when a function needs them.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Workspace": "workbench.core.workspace",
    "ShapesConfig": "workbench.core.data.generate",
    "ShapesDataset": "workbench.core.data.generate",
    "generate_shapes": "workbench.core.data.generate",
    "generate_shift": "workbench.core.data.generate",
    "SHIFTS": "workbench.core.data.generate",
    "check_dataset": "workbench.core.data.checks",
    "load_model": "workbench.core.models",
    "demo_weights": "workbench.core.models",
    "demo_card": "workbench.core.models",
    "model_info": "workbench.core.models",
    "AccuracyConfig": "workbench.core.accuracy",
    "AccuracyResult": "workbench.core.accuracy",
    "evaluate": "workbench.core.accuracy",
    "TrainConfig": "workbench.core.train",
    "train": "workbench.core.train",
    "ExportConfig": "workbench.core.export",
    "ExportFormat": "workbench.core.export",
    "export": "workbench.core.export",
    "RuntimeOptions": "workbench.core.runtimes",
    "open_runner": "workbench.core.runtimes",
    "LatencyConfig": "workbench.core.latency",
    "time_calls": "workbench.core.latency",
    "ParityConfig": "workbench.core.parity",
    "measure_latency": "workbench.core.study",
    "evaluate_variant": "workbench.core.study",
    "check_parity": "workbench.core.study",
    "comparison_table": "workbench.core.compare",
    "BenchConfig": "workbench.core.bench",
    "run_bench": "workbench.core.bench",
    "PruneConfig": "workbench.core.prune",
    "prune": "workbench.core.prune",
    "SparsifyConfig": "workbench.core.prune",
    "sparsify": "workbench.core.prune",
    "QuantizeConfig": "workbench.core.quantize",
    "quantize": "workbench.core.quantize",
    "QATConfig": "workbench.core.qat",
    "qat": "workbench.core.qat",
    "DistillConfig": "workbench.core.distill",
    "distill": "workbench.core.distill",
    "finetune": "workbench.core.distill",
    "Recipe": "workbench.core.pipeline",
    "run_recipe": "workbench.core.pipeline",
    "student_weights": "workbench.core.models",
    "DemoConfig": "workbench.core.demo",
    "run_demo": "workbench.core.demo",
    "Session": "workbench.core.session",
    "ModelChoice": "workbench.core.session",
    "open_model": "workbench.core.session",
    "MeasureRequest": "workbench.core.session",
    "measure_variants": "workbench.core.session",
    "fingerprint": "workbench.core.environment",
    "Progress": "workbench.core.progress",
    "WorkbenchError": "workbench.core.errors",
    "ConfigError": "workbench.core.errors",
    "DatasetError": "workbench.core.errors",
    "ModelLoadError": "workbench.core.errors",
    "ModelNotFoundError": "workbench.core.errors",
    "WorkspaceError": "workbench.core.errors",
    "Cancelled": "workbench.core.errors",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
