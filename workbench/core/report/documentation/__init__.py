"""Documents drawn from the ledger: the model card of a variant and the record of where and how it is served."""
