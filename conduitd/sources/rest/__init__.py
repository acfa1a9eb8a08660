"""The `type: rest` source: paginated JSON endpoints read over HTTP (httpx)."""
