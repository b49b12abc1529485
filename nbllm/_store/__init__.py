"""The SQLite store: every finished answer written as it arrives, read back as a cache.

- ``store``: ``Store`` (the results table, lookups, exports) and request fingerprints.
- ``writer``: the thread that commits recorded rows in groups, off the engine loop.
"""

from .store import COLUMNS, Store, default_store_path, request_fingerprint

__all__ = ["COLUMNS", "Store", "default_store_path", "request_fingerprint"]
