"""Sweeps: search spaces over recipe options, their trials on a local or a Dask distributed engine, the Pareto front."""
