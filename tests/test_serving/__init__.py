"""The deployed service's tests: one module per capability over one deployment (conftest.py)."""
