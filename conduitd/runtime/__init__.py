"""The runtime: the supervisor, pipelines, batching, the commit protocol and retries, and the
inspection behind `validate` and `schema`."""
