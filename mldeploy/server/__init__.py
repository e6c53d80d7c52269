"""The HTTP service: ``create_app(ServerConfig(...))`` (FastAPI), served by uvicorn from ``mldeploy serve``."""
