"""Message Batches: the contract the batch routes use, and the server's own batches, answered in the background.

- `base.py`: the `Batches` contract (create, retrieve, page, cancel, delete,
  results);
- `store.py`: the `BatchStore` interface: batches and their requests, kept per
  scope, claimed by the workers with leases; `sqlite_store.py` keeps them in
  the state file of one machine (`SQLiteBatchStore`), `redis_store.py` in Redis
  for several hosts (`RedisBatchStore`, imported from there: only it needs
  redis-py);
- `local.py`: `LocalBatches`, the contract answered from the store, in the
  real API's shapes and rules;
- `processor.py`: `BatchProcessor`, each worker's thread that answers the
  requests with the backend.

A backend that runs batches itself (the proxy) offers its own `Batches`
instead (`Backend.own_batches`).
"""

from __future__ import annotations

from backends.batches.base import Batches, results_path
from backends.batches.local import LocalBatches
from backends.batches.processor import BatchProcessor
from backends.batches.sqlite_store import SQLiteBatchStore
from backends.batches.store import BatchStore

__all__ = ["BatchProcessor", "BatchStore", "Batches", "LocalBatches", "SQLiteBatchStore", "results_path"]
