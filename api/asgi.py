"""ASGI entry point for servers that import an app (uvicorn api.asgi:app --workers N); settings from DEBIAS_*."""
from .app import create_app

app = create_app()
