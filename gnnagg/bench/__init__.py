"""Runners and data preparation for gnnagg's benchmarks."""
