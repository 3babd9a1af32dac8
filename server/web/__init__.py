"""HTTP: the ASGI application, the JSON 1.1 request flow, and serving it with uvicorn."""
