"""Helpers shared by the test folders, imported as ``tests.support.<module>`` (the repo root is on
``sys.path`` through ``pythonpath = ["."]`` in pyproject.toml, and ``PYTHONPATH`` for subprocesses)."""
