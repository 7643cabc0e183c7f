"""Matplotlib figures: pure functions that take measured numbers and return a Figure.

One submodule per topic; the public functions are re-exported here.
"""
