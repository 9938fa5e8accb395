"""Reports: comparison tables from the ledger, plotly figures (pure functions), self-contained HTML pages."""
