"""Metric learning and verification."""
