"""Datasets: the generated shapes set, its domain-shifted copies, and checks of any YOLO dataset."""
