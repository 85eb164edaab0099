"""The inference service: FastAPI app, security, micro-batching, model lifecycle, audit."""
