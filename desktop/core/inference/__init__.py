"""Inference: a folder's files and tiles, decoded and resized, run through the model and decided into calls."""
