"""Inference: detectors, the emotion classifier, the pipeline, and the Redis worker."""
