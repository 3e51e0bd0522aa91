"""Watching the server serve: the backend's side of each request's facts, and the metrics operators scrape.

`backend.py` wraps the backend the handlers call, noting what only its answers
say (whether the reply streamed, its events and their times, the tokens in
and out) in the request's record (app/http/facts.py); `metrics.py` reads that
record when the response ends, and counts what the backends report through
the observers the composition root hands them (the proxy's upstream errors,
the batch items' outcomes). The journal (app/http/journal.py) reads the same
record.
"""
