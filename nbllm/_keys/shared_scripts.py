"""What the shared key pool keeps in Redis, and the Lua scripts that change it atomically.

Pure: names and script sources only; ``_shared.py`` runs them. Every key in Redis is derived from a
truncated sha256 of the API key, never the key itself, and lives under a namespace (``nbllm:pool:``)::

    {ns}{<id>}:rpm       GCRA "theoretical arrival time" (µs, server clock) of the request bucket
    {ns}{<id>}:tpm       the same for the token bucket
    {ns}{<id>}:cooldown  exists while the key cools down after a 429 (its PTTL is the time left)
    {ns}{<id>}:disabled  why the key was disabled (revoked, out of quota); expires after DISABLED_TTL
    {ns}{<id>}:limits    hash rpm/tpm learned from a provider's headers, so a new process starts with them
    {ns}{<id>}:probe     while nobody knows the key's limits: hash inflight/cap/next, the probing of all
                         processes together (AIMD on the requests in flight, paced first requests)
    {ns}processes        sorted set: one member per live pool, scored by its last heartbeat (ms)

The ``{<id>}`` hash tag keeps one key's entries in one Redis Cluster slot, so a script may touch them all.

GCRA is the leaky bucket of ``_bucket.py`` stored as one number: with rate ``r`` and capacity ``C``,
``level = max(0, tat - now) * r``. A request of ``a`` fits if ``level + min(a, C) <= C`` (amounts above
capacity wait for an empty bucket, as ``LeakyBucket.time_until`` does) and then moves ``tat`` by ``a / r``.
All scripts read the clock with ``redis.call('TIME')`` so that hosts need no synchronised clocks; tests
may pass ``now`` explicitly to drive the math by hand.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "ADJUST",
    "COOLDOWN",
    "DEFAULT_NAMESPACE",
    "HEARTBEAT",
    "LEARNED",
    "PROBE_END",
    "SEED",
    "TAKE",
    "key_id",
    "key_names",
    "processes_name",
]

DEFAULT_NAMESPACE = "nbllm:pool:"
# A disabled key (revoked, out of quota) stays disabled for every process this long; a fixed key gets
# used again afterwards, or at once after `DEL {ns}{<id>}:disabled`.
DISABLED_TTL_SECONDS = 6 * 3600
# Learned limits outlive any single run, so tomorrow's first process starts with them.
LIMITS_TTL_SECONDS = 7 * 24 * 3600
# The probing state of a key is forgotten this long after its last change: a process killed with probes
# in flight leaves them counted until then.
PROBE_TTL_MS = 30_000

GRANTED, WAIT, DISABLED = 0, 1, 2


def key_id(value: str) -> str:
    """The name of a key in Redis: 16 hex digits of its sha256 (64 bits: unique, and says nothing)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def key_names(namespace: str, value: str) -> dict[str, str]:
    """The Redis keys of one API key: rpm, tpm, cooldown, disabled, limits."""
    base = f"{namespace}{{{key_id(value)}}}:"
    return {part: base + part for part in ("rpm", "tpm", "cooldown", "disabled", "limits", "probe")}


def processes_name(namespace: str) -> str:
    return f"{namespace}processes"


# Shared by the scripts: the caller's ``now`` (µs) if given, else the server's clock. Lua numbers are
# doubles, exact for integers below 2^53 (µs since 1970 are about 2^51); '%.0f' keeps every digit,
# where tostring() would round to 14.
_CLOCK = """
local function clock(given)
  local now = tonumber(given)
  if now and now > 0 then return now end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function store(key, tat, now)
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
"""

# KEYS: rpm, tpm, cooldown, disabled[, limits, probe]. ARGV: rpm/min, rpm burst s, tpm/min, tpm burst s,
# tokens, now µs[, probe: -1 if this process knows a limit, else the pacing µs (0: none); burst s for
# limits read from KEYS[5]; the probe's first in-flight cap; µs to wait when the probe is full; how many
# probes go out before the pacing starts].
# A rate of 0 means "no such limit". Without local limits, limits another process learned (KEYS[5]) are
# used; without any, the key is probed by all processes together (KEYS[6]). Returns {GRANTED, 0[, 1]}
# having taken capacity from both buckets (the 1: it counts in the probe), {WAIT, µs} having taken
# nothing, or {DISABLED, 0, reason}.
TAKE = _CLOCK + """
local reason = redis.call('GET', KEYS[4])
if reason then return {2, 0, reason} end
local now = clock(ARGV[6])
local wait = 0
local cooldown = redis.call('PTTL', KEYS[3])
if cooldown > 0 then wait = cooldown * 1000 end
local rpm, rpm_burst, tpm, tpm_burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local probe = tonumber(ARGV[7] or '-1')
if probe >= 0 then
  local learned = redis.call('HMGET', KEYS[5], 'rpm', 'tpm')
  if learned[1] then rpm, rpm_burst = tonumber(learned[1]), tonumber(ARGV[8]) end
  if learned[2] then tpm, tpm_burst = tonumber(learned[2]), tonumber(ARGV[8]) end
  if rpm > 0 or tpm > 0 then probe = -1 end
end
if probe >= 0 then
  local p = redis.call('HMGET', KEYS[6], 'inflight', 'cap', 'next', 'sent')
  local inflight, cap, next = tonumber(p[1] or '0'), tonumber(p[2] or ARGV[9]), tonumber(p[3] or '0')
  if inflight >= cap then wait = math.max(wait, tonumber(ARGV[10])) end
  if probe > 0 and next > now then wait = math.max(wait, next - now) end
  if probe > 0 and tonumber(p[4] or '0') + 1 < tonumber(ARGV[11] or '0') then probe = 0 end
end
local plans = {}
local function plan(key, per_minute, burst, amount)
  if per_minute <= 0 then return end
  local rate = per_minute / 60000000
  local capacity = math.max(1, per_minute / 60 * burst)
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
  local excess = (tat - now) * rate + math.min(amount, capacity) - capacity
  if excess > 1e-9 then wait = math.max(wait, excess / rate) end
  plans[#plans + 1] = {key, tat + amount / rate}
end
plan(KEYS[1], rpm, rpm_burst, 1)
plan(KEYS[2], tpm, tpm_burst, tonumber(ARGV[5]))
if wait > 0 then return {1, math.ceil(wait)} end
for _, p in ipairs(plans) do store(p[1], p[2], now) end
if probe >= 0 then
  redis.call('HINCRBY', KEYS[6], 'inflight', 1)
  redis.call('HINCRBY', KEYS[6], 'sent', 1)
  redis.call('HSETNX', KEYS[6], 'cap', ARGV[9])
  if probe > 0 then redis.call('HSET', KEYS[6], 'next', string.format('%.0f', now + probe)) end
  redis.call('PEXPIRE', KEYS[6], """ + str(PROBE_TTL_MS) + """)
  return {0, 0, 1}
end
return {0, 0}
"""

# KEYS: probe. ARGV: how the probed request ended (1 answered: the cap grows by one; 2 rate limited: it
# halves; 0 neither), the largest cap. AIMD on the requests all processes have in flight, as one pool
# does locally (``KeyState.in_flight_cap``). Returns the cap.
PROBE_END = """
local inflight = tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0')
local cap = tonumber(redis.call('HGET', KEYS[1], 'cap') or '0')
if cap <= 0 then return 0 end
local outcome = tonumber(ARGV[1])
if outcome == 1 then cap = math.min(tonumber(ARGV[2]), cap + 1) end
if outcome == 2 then cap = math.max(1, math.floor(cap / 2)) end
redis.call('HSET', KEYS[1], 'inflight', math.max(0, inflight - 1), 'cap', cap)
redis.call('PEXPIRE', KEYS[1], """ + str(PROBE_TTL_MS) + """)
return cap
"""

# KEYS: limits, rpm, tpm. ARGV: rpm/min, tpm/min learned (0: not learned), then per bucket µs of use a
# process counts now (its bucket's level / rate, from the aged headers), now µs (0: the server's clock).
# Publishes the limits and makes each shared bucket at least that full: requests sent while probing went
# through no bucket, and an empty one would let every process burst into a key the probe already used.
LEARNED = _CLOCK + """
local now = clock(ARGV[5])
local limits = {}
if tonumber(ARGV[1]) > 0 then limits[#limits + 1] = 'rpm'; limits[#limits + 1] = ARGV[1] end
if tonumber(ARGV[2]) > 0 then limits[#limits + 1] = 'tpm'; limits[#limits + 1] = ARGV[2] end
if #limits > 0 then
  redis.call('HSET', KEYS[1], unpack(limits))
  redis.call('EXPIRE', KEYS[1], """ + str(LIMITS_TTL_SECONDS) + """)
end
for i = 2, 3 do
  local ahead = tonumber(ARGV[i + 1])
  if ahead > 0 then
    local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now + ahead)
    store(KEYS[i], tat, now)
  end
end
return #limits / 2
"""

# KEYS: one bucket. ARGV: rate/min, delta (negative gives back an over-estimate), now µs.
# Returns the bucket's level after the correction (rounded).
ADJUST = _CLOCK + """
local per_minute, delta = tonumber(ARGV[1]), tonumber(ARGV[2])
if per_minute <= 0 then return 0 end
local now = clock(ARGV[3])
local rate = per_minute / 60000000
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + delta / rate
if tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
store(KEYS[1], tat, now)
return math.floor((tat - now) * rate + 0.5)
"""

# KEYS: cooldown. ARGV: ms. Only lengthens a cooldown (two 429s must not shorten each other's wait).
COOLDOWN = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return redis.call('PTTL', KEYS[1])
"""

# KEYS: processes. ARGV: member, ttl ms. Returns how many pools sent a heartbeat within ttl.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 4)
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: buckets. ARGV: per bucket, µs of tolerance (capacity / rate). After Redis lost its data (a
# restart), mark each bucket full unless a process already wrote it: nobody knows what was sent just
# before, and an empty bucket would let every process burst at once.
SEED = _CLOCK + """
local now = clock(nil)
for i, key in ipairs(KEYS) do
  local us = tonumber(ARGV[i])
  if us > 0 then
    redis.call('SET', key, string.format('%.0f', now + us), 'NX', 'PX', math.ceil(us / 1000) + 1000)
  end
end
return #KEYS
"""
