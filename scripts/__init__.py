"""Scripts of the product's provenance: how the shipped models were derived (graph surgery, derived cards) and
the README's figures (screenshots). Run them from the repository root as modules, e.g.
`python -m scripts.screenshots`. Measurements and experiments are in `scripts/measure/`."""
