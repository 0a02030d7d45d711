"""Core math, no Lightning: sampling, variance, the losses, pair geometry, the exact objective,
the second-order steppers and Theorem 1's construction."""
