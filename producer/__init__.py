"""Turns images, videos and cameras into frame jobs on a Redis stream.

Must not import torch (tests check it): producers run on machines without it.
"""
