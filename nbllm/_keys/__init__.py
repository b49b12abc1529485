"""Keys and their limits: which key takes the next request, and when.

- ``config``: ``ApiKey`` and reading keys from arguments, the environment and ``.env``.
- ``bucket``: the leaky bucket (RPM/TPM) as plain arithmetic on a clock value.
- ``snapshot``: what rate-limit headers said about a key.
- ``latency``: how long a key's answers take per model (read by admission and hedging).
- ``state``: one key's limits, health and counters, and the pure choice of a key.
- ``pool``: ``KeyPool`` (a FIFO queue in front of the keys) and ``Lease`` (one request's right to a key).
- ``shared*``: the same limits kept in Redis for several processes (``KeyPool(shared="redis://…")``).
- ``status``: the pool as a table.

Nothing here sends a request: the client (``nbllm._client``) leases a key, sends, and reports back.
"""

from .bucket import LeakyBucket
from .config import ApiKey, KeySpec, keys_from_env, load_env, to_api_key
from .latency import LatencyWindow
from .pool import KeyPool, Lease
from .snapshot import RateLimitSnapshot
from .state import KeyState, choose_key
from .status import PoolStatus, format_key_line, format_key_table, format_key_table_html

__all__ = [
    "ApiKey",
    "KeyPool",
    "KeySpec",
    "KeyState",
    "LatencyWindow",
    "LeakyBucket",
    "Lease",
    "PoolStatus",
    "RateLimitSnapshot",
    "choose_key",
    "format_key_line",
    "format_key_table",
    "format_key_table_html",
    "keys_from_env",
    "load_env",
    "to_api_key",
]
