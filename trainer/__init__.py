"""Offline work: datasets, augmentation, training, evaluation and benchmarks."""
