"""The store: a workspace folder, its SQLite ledger of typed records, and atomic staging of artifacts."""
