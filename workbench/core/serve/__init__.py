"""Serving a variant: the inference service (Open Inference Protocol v2 and an image endpoint), its protections
(TLS, API keys with roles, a TOTP second factor, a hash-chained audit log, encrypted and signed models) and its
monitoring."""
