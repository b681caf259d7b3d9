"""SlideTally: CNN pre-classification of microscope images for laboratory review."""

__version__ = "0.1.0"
