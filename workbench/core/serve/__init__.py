"""Serving a variant: the inference service (Open Inference Protocol v2 and an image endpoint) in `service`, its
protections in `security` (TLS, API keys with roles, a TOTP second factor, a hash-chained audit log), its
monitoring in `monitoring`, and deployment bundles of encrypted, signed models in `bundle`.

Within serve, lower sub-packages never import higher ones: bundle > service > monitoring > security."""
