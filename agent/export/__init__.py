"""``preserve export``: an evidence directory in formats other forensic tools read."""
