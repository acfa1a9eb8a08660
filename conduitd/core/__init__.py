"""The pure core: records, schema, quality rules, the evolution plan, batch preparation and
decoding. No asyncio, no drivers, no file or network I/O, no logging handlers."""
