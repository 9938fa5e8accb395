"""Deploy Workbench: take a trained Ultralytics YOLO detector to deployment, measured on your machine.

Importing this package is cheap: each name below is imported from its module on first use, so torch,
Ultralytics and ipywidgets load only when a function needs them.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    # the workspace and its ledger
    "Workspace": "workbench.core.store.workspace",
    "default_workspace": "workbench.core.store.workspace",
    # data
    "ShapesConfig": "workbench.core.data.generate",
    "generate_shapes": "workbench.core.data.generate",
    "generate_shift": "workbench.core.data.generate",
    "SHIFTS": "workbench.core.data.generate",
    "check_dataset": "workbench.core.data.checks",
    # models
    "load_model": "workbench.core.models.sources",
    "demo_weights": "workbench.core.models.cards",
    "demo_card": "workbench.core.models.cards",
    "student_weights": "workbench.core.models.cards",
    "student_card": "workbench.core.models.cards",
    "searched_weights": "workbench.core.models.cards",
    "searched_card": "workbench.core.models.cards",
    "model_info": "workbench.core.models.summary",
    "ExportConfig": "workbench.core.models.export",
    "ExportFormat": "workbench.core.models.export",
    "export": "workbench.core.models.export",
    "RuntimeOptions": "workbench.core.models.runners",
    "open_runner": "workbench.core.models.runners",
    # measurement: one plan type, one entry point
    "MeasurePlan": "workbench.core.measure.plan",
    "measure": "workbench.core.services.measuring",
    "AccuracyConfig": "workbench.core.measure.accuracy",
    "evaluate": "workbench.core.measure.accuracy",
    "LatencyConfig": "workbench.core.measure.latency",
    "time_calls": "workbench.core.measure.latency",
    "ratio_bound": "workbench.core.measure.paired",
    "compare_calls": "workbench.core.measure.paired",
    # evaluation sets: which images a mAP was measured on; only like is put beside like
    "EvaluationSet": "workbench.core.store.evaluation_sets",
    "evaluation_sets": "workbench.core.store.evaluation_sets",
    "evaluation_set": "workbench.core.data.identity",
    "measure_on": "workbench.core.measure.on_set",
    # optimization
    "TrainConfig": "workbench.core.optimize.train",
    "train": "workbench.core.optimize.train",
    "PruneConfig": "workbench.core.optimize.prune",
    "prune": "workbench.core.optimize.prune",
    "SparsifyConfig": "workbench.core.optimize.sparsify",
    "sparsify": "workbench.core.optimize.sparsify",
    "QuantizeConfig": "workbench.core.optimize.quantize",
    "quantize": "workbench.core.optimize.quantize",
    "QATConfig": "workbench.core.optimize.qat",
    "qat": "workbench.core.optimize.qat",
    "DistillConfig": "workbench.core.optimize.distill",
    "distill": "workbench.core.optimize.distill",
    "finetune": "workbench.core.optimize.distill",
    "Recipe": "workbench.core.optimize.recipes",
    "run_recipe": "workbench.core.services.measuring",
    # where to deploy: requirements, the target catalog, the advisor
    "Requirements": "workbench.core.advise.requirements",
    "load_catalog": "workbench.core.advise.catalog",
    "advise_workspace": "workbench.core.advise.advisor",
    "advise_model": "workbench.core.advise.advisor",
    "advice_figure": "workbench.core.report.advice",
    "advice_table": "workbench.core.report.advice",
    "catalog_table": "workbench.core.report.advice",
    "estimate_checks": "workbench.core.report.advice",
    "estimate_check_figure": "workbench.core.report.advice",
    "estimate_check_text": "workbench.core.report.advice",
    "ranking_changes": "workbench.core.report.advice",
    "describe_changes": "workbench.core.report.advice",
    # deployments and the doctors: why accuracy dropped, why inference is slow
    "DeploymentSpec": "workbench.core.models.detector",
    "Preprocessing": "workbench.core.models.detector",
    "Postprocessing": "workbench.core.models.detector",
    "Detections": "workbench.core.models.detector",
    "open_detector": "workbench.core.models.detector",
    "Verdict": "workbench.core.doctor.findings",
    "Finding": "workbench.core.doctor.findings",
    "Diagnosis": "workbench.core.doctor.findings",
    "diagnose_accuracy": "workbench.core.doctor.accuracy",
    "run_accuracy_doctor": "workbench.core.doctor.accuracy",
    "describe_diagnosis": "workbench.core.doctor.accuracy",
    "compare_detections": "workbench.core.doctor.accuracy",
    "diagnose_speed": "workbench.core.doctor.speed",
    "run_speed_doctor": "workbench.core.doctor.speed",
    "build_accuracy_lab": "workbench.core.doctor.lab",
    "SpeedLab": "workbench.core.doctor.lab",
    "fault_hurt_table": "workbench.core.doctor.lab",
    # reports
    "comparison_table": "workbench.core.report.compare",
    "pipeline_table": "workbench.core.report.tables",
    "per_class_figure": "workbench.core.report.figures",
    "prediction_grid_html": "workbench.core.report.images",
    "model_card": "workbench.core.report.documentation.model_card",
    "deployment_record": "workbench.core.report.documentation.deployment_record",
    # services
    "Session": "workbench.core.services.session",
    "ModelChoice": "workbench.core.services.session",
    "open_model": "workbench.core.services.session",
    "measure_variants": "workbench.core.services.session",
    "DemoConfig": "workbench.core.services.demo",
    "run_demo": "workbench.core.services.demo",
    "BenchConfig": "workbench.core.bench.run",
    "run_bench": "workbench.core.bench.run",
    # serving
    "ServedModel": "workbench.core.serve.service.model",
    "KeyStore": "workbench.core.serve.security.keys",
    "Role": "workbench.core.serve.security.principal",
    "Action": "workbench.core.serve.security.principal",
    "Denied": "workbench.core.serve.security.principal",
    "Guard": "workbench.core.serve.security.guard",
    "AuditLog": "workbench.core.serve.security.audit",
    "verify_audit": "workbench.core.serve.security.audit",
    "Limits": "workbench.core.serve.service.limits",
    "create_app": "workbench.core.serve.service.app",
    "serving": "workbench.core.serve.service.server",
    "local_certificate": "workbench.core.serve.security.tls",
    "client_context": "workbench.core.serve.security.tls",
    "generate_key": "workbench.core.serve.bundle.protect",
    "load_key": "workbench.core.serve.bundle.protect",
    "generate_signing_key": "workbench.core.serve.bundle.protect",
    "protect": "workbench.core.serve.bundle.protect",
    "verify_manifest": "workbench.core.serve.bundle.protect",
    "decrypt_bundle": "workbench.core.serve.bundle.protect",
    "open_protected": "workbench.core.serve.bundle.protect",
    "ProtectionError": "workbench.core.serve.bundle.protect",
    "Metrics": "workbench.core.serve.monitoring.metrics",
    "DriftMonitor": "workbench.core.serve.monitoring.drift",
    "alert_sentence": "workbench.core.serve.monitoring.drift",
    "drift_reference": "workbench.core.serve.monitoring.reference",
    "drift_monitor": "workbench.core.serve.monitoring.reference",
    "workspace_loader": "workbench.core.serve.service.loader",
    "serve_model": "workbench.core.serve.service.local_server",
    # sweeps
    "SearchSpace": "workbench.core.services.recipe_sweeps",
    "run_sweep": "workbench.core.sweep.search",
    "LocalEngine": "workbench.core.sweep.trials",
    "DaskEngine": "workbench.core.sweep.dask_engine",
    "pareto_front": "workbench.core.sweep.pareto",
    "sweep_figure": "workbench.core.report.pareto",
    "export_to_mlflow": "workbench.core.services.mlflow_variants",
    # base
    "fingerprint": "workbench.core.environment",
    "describe_environment": "workbench.core.environment",
    "usable_cores": "workbench.core.environment",
    "load_average": "workbench.core.environment",
    "load_note": "workbench.core.environment",
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
