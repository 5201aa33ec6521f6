"""rank models."""
