"""The composition layer, above the capabilities it wires together: the session the panels share, `workbench demo`,
a doctor run on a workspace variant, sweeps over the optimizer's recipes, the variants as MLflow runs, and the
shipped models' training."""
