"""Configuration as code: pilothouse.yaml validated, planned against the live state, applied."""
