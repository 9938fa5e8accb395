"""Models: where a detector comes from, the runtimes that run it, export, end-to-end inference, the Ultralytics glue."""
