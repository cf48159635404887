"""Commands that run the inference pipeline: ``analyze`` (in-process) and ``worker`` (Redis)."""
