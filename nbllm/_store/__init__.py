"""The SQLite store: every finished answer written as it arrives, read back as a cache.

- ``store``: ``Store`` (the results file: writes that never fail silently, lookups, exports).
- ``rows``: the table's shape and the pure conversions between rows and responses; request fingerprints.
- ``writer``: the thread that commits recorded rows in groups, off the engine loop.
- ``jobs``: the job record of provider batches (``store.provider_jobs``): written before anything is sent.
"""

from .jobs import PartPlan, PartRecord, ProviderJobs
from .rows import COLUMNS, RequestFingerprints, request_fingerprint
from .store import Store, default_store_path

__all__ = ["COLUMNS", "PartPlan", "PartRecord", "ProviderJobs", "RequestFingerprints", "Store", "default_store_path", "request_fingerprint"]
