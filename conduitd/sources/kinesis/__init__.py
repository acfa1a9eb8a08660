"""Kinesis Data Streams as a source (`type: kinesis`)."""
