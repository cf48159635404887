"""moodstream: emotion recognition on faces in image and video streams."""

__version__ = "0.1.0"
