"""Built-in data for the task models (placeholder filled in below)."""
