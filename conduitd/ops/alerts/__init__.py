"""Alerts to webhooks and Slack (`alerts:` in the config): `rules` (pure: incidents), `envelope`
(what a sink receives), `pacing` (the rate limit), `delivery` (httpx, retries) and `watch` (the
runtime's task tying them together)."""
