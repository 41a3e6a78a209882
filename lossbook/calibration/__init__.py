"""Calibration and score distributions."""
