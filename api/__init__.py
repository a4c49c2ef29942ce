"""The HTTP layer of tracer: FastAPI routes over the ``tracer`` core."""
