"""Rate limits as the real API sets them (UNDERSTUDY_RATE_LIMITS): token buckets shared through the state store.

- `config.py`: the setting parsed (the environment's `rpm=50,itpm=30000,otpm=8000`, or a settings file's
  mapping with limits per model class, scope and API key, and a `total`); settings.py imports its parser.
- `limiter.py`: `RateLimiter`, which admits a request (taking its request, input and output tokens from its
  buckets, or refusing it with a 429) and settles it at its end (the estimates corrected to its usage).
- `headers.py`: the real API's formats: the anthropic-ratelimit-* headers, retry-after, the 429's words.
- `guards.py`: the backend and the batches behind the limiter, as create_app serves them (`rate_limited`).

The buckets' arithmetic is the store's (backends/state/buckets.py: SQLite's in Python, Redis's in Lua).
With no limits configured, create_app serves the backend and the batches as they are: nothing here runs.
"""
