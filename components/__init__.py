"""Reusable UI: pure figure builders, cards, grids and the page shell; no I/O."""
