"""`make bench`: reference and optimized rows measured side by side, cross-checked, written as JSON and markdown."""
