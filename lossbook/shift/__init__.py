"""Distribution shift and test-time adaptation."""
