"""Measurement: latency, accuracy (mAP), parity, and the one entry point every caller measures a variant through."""
