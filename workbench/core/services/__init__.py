"""Services on top of the layers: the session the panels share, `workbench demo`, the shipped models' training."""
