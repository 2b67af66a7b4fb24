"""The REST API (FastAPI): thin routers over the data-access layer."""
