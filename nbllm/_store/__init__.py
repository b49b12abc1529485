"""The SQLite store: every finished answer written as it arrives, read back as a cache.

- ``store``: ``Store`` (the results table, lookups, exports) and request fingerprints.
- ``writer``: the thread that commits recorded rows in groups, off the engine loop.
- ``jobs``: the job record of provider batches (``store.provider_jobs``): written before anything is sent.
"""

from .jobs import PartPlan, PartRecord, ProviderJobs
from .store import COLUMNS, Store, default_store_path, request_fingerprint

__all__ = ["COLUMNS", "PartPlan", "PartRecord", "ProviderJobs", "Store", "default_store_path", "request_fingerprint"]
