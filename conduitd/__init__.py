"""conduitd: a streaming ingestion daemon with checkpointed, effectively-once commits."""

__version__ = "0.1.0"
