"""Deployment bundles: the model encrypted and signed (`protect`), its server config, and the signed folder with a
Dockerfile and Kubernetes manifests that `workbench bundle` makes and `workbench serve --bundle` loads."""
