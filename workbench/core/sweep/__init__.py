"""Sweeps: search spaces over recipe options, their execution on Dask distributed, the Pareto front, MLflow export."""
