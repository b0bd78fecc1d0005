"""The analysis stage: one decode pass per clip feeding Numba kernels, cached by content."""
