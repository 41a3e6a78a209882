"""Surrogate and robust classification losses."""
