"""Who may call the service and how safely: roles and actions, API keys with a TOTP second factor, the guard that
checks them, the hash-chained audit log, and TLS."""
