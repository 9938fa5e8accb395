"""Watching a served variant: request metrics and payload sampling, drift of production traffic against the
variant's reference, and a running server's /metrics read back for the live panel."""
