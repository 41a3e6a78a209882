"""Audio, sensing and time series."""
