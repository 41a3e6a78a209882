"""Learning theory, checked by simulation."""
