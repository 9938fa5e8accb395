"""Where to deploy: the target catalog, the requirements, the latency estimator and the advisor."""
