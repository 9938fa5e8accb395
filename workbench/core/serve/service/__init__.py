"""The inference service: the served model, the Open Inference Protocol, the request limits, the Starlette app with
its admin endpoints, the uvicorn server, the variant loader, and a local server for notebooks and tests."""
