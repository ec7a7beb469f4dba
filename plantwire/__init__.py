"""plantwire."""
