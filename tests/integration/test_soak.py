"""The soak test (bench/soak.py), short: ten seconds of mixed traffic lose nothing and leak nothing.

The full run is `python bench/soak.py --minutes 5`. This one sends 120
requests a second for 10 seconds (after a 5-second warm-up) — whole replies,
streams, streams the client drops mid-way, 429s, token counts — to gunicorn
as gunicorn.conf.py configures it, with the scripted backend and the journal
on, and checks: no 5xx, no client-side failure, every request in the journal,
the same workers throughout, nothing in the log, and no leak of threads or
file descriptors per worker. Handler threads are made on demand, up to the
pool's size: a few more at the end than after the warm-up are allowed (more
if the run had a busier moment than its warm-up), and each that has touched
the journal or a sequence holds its own SQLite connection; the descriptors
other than those (sockets, pipes, files) must not grow. Memory is printed, not checked:
10 seconds say little about it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from builders import REPO_ROOT

#: 1,200 requests: what a leak shows in grows with the requests, not with the seconds.
SECONDS, RATE = 10, 120
#: New handler threads allowed per worker between the warm-up and the end, both measured with the server idle.
THREADS_TOLERANCE = 6
#: Descriptors other than the SQLite connections' (sockets, pipes, files) may not grow beyond this.
FDS_TOLERANCE = 2
#: Each handler thread that has touched the journal or a sequence keeps its own SQLite connection open.
SQLITE_FDS_PER_THREAD = 3


def test_a_short_soak_loses_nothing_and_leaks_nothing():
    run = subprocess.run(
        [sys.executable, "bench/soak.py", "--seconds", str(SECONDS), "--rate", str(RATE), "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    figures = json.loads(run.stdout)
    print(json.dumps(figures, indent=1))
    assert run.returncode == 0, figures

    assert figures["sent"] == SECONDS * RATE and figures["achieved_rate"] > 0.9 * RATE
    assert figures["five_xx"] == 0 and figures["client_errors"] == {}
    assert figures["lost_journal_entries"] == 0 and figures["journal_entries"] == figures["sent_with_warmup"]
    assert figures["statuses"].get("200 stream", 0) > 0 and figures["statuses"].get("429", 0) > 0
    assert figures["dropped_mid_stream"] > 0
    assert figures["tracebacks_in_log"] == 0 and figures["same_workers"]
    # The pool may grow to meet a busier moment than the warm-up had (a pause on a loaded machine, say).
    busier = max(0, figures["peak_in_flight"] - figures["peak_in_flight_warmup"])
    for pid, start in figures["workers_at_start"].items():
        end = figures["workers_at_end"][pid]
        new_threads = end["threads"] - start["threads"]
        assert new_threads <= THREADS_TOLERANCE + busier, (pid, start, end)
        assert end["other_fds"] <= start["other_fds"] + FDS_TOLERANCE, (pid, start, end)
        assert end["sqlite_fds"] <= SQLITE_FDS_PER_THREAD * end["threads"], (pid, start, end)
