"""CLI command groups; each module exposes ``register(app)`` and stays a thin layer over the library."""
