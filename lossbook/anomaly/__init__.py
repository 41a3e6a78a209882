"""Anomaly and out-of-distribution detection."""
