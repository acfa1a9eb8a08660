"""The control plane: an HTTP API under /api/v1 and a web UI at /, served by the daemon
(`service.api`) in its own event loop. `server` binds it, `app` assembles it, `tokens` says who
may do what, `access` is what the routes reach the runtime and destinations through, and
`routes/` holds one module per resource."""
