"""Code both sides of the wire use: labels, settings, errors, keys, codec, models.

Nothing here imports torch at package import time; ``shared.models`` does, and
only the worker and the trainer import it.
"""
