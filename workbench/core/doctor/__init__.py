"""Troubleshooting: the accuracy doctor and the speed doctor, and the lab of deliberately broken deployments."""
