"""Benchmarks of the training step and the data pipeline (see README.md)."""
