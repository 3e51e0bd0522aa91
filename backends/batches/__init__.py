"""Message Batches: the contract the batch routes use, and the server's own batches, answered in the background.

- `base.py`: the `Batches` contract (create, retrieve, page, cancel, delete,
  results);
- `store.py`: batches and their requests in the shared state file, claimed
  by the workers with leases;
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
from backends.batches.store import BatchStore

__all__ = ["BatchProcessor", "BatchStore", "Batches", "LocalBatches", "results_path"]
