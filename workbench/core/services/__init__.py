"""The composition layer, above the capabilities it wires together: the session the panels share, measuring with the
advisor's estimate, `workbench demo`, sweeps over the optimizer's recipes, the searched model, the variants as MLflow
runs, and the shipped models' training."""
