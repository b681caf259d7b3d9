"""Measurements and experiments whose numbers went into the model cards, the lab book or the README (each file
says which). Run from the repository root as modules, e.g. `python -m scripts.measure.gui_stalls`."""
