"""Pure logic of the workbench: no widgets here; heavy libraries are imported on use."""
