"""``blendin-local serve``: BlendIn behind an OpenAI-compatible HTTP API (FastAPI + uvicorn)."""
