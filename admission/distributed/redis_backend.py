"""``RedisBackend``: shared token buckets in Redis, one atomic round trip per admission.

Each bucket is one hash (``tokens``, ``at``, ``rate``, ``burst``) under
``{key_prefix}bucket:{limiter name}``, expiring when it has been idle long
enough to be full again (at least ``key_ttl``).  A Lua script, loaded once and
run with EVALSHA (loaded again on NOSCRIPT), refills the bucket on the Redis
server's clock (``TIME``), so the replicas' clocks never matter, and takes the
cost or answers how long until it could.

redis-py's asyncio client is imported on first use (the ``redis`` extra); it
needs asyncio (not trio).  No retries and short timeouts: a Redis that does not
answer must turn into a local fallback within one admission, not hold it up.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from admission._urls import mask_url
from admission.distributed.base import BackendUnavailable, TakeAnswer

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBackend"]

T = TypeVar("T")

# The state is one string, "tokens seconds.micros rate burst", kept as written
# (rate and burst as the client sent them), so nothing loses precision on the
# way through Lua's 14-digit tostring but the tokens themselves.
_TAKE = """
local rate, burst, init, conf, ttl = string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
local t = redis.call('TIME')
local now = t[1] + t[2] / 1000000
local st, sa, sr, sb
local v = redis.call('GET', KEYS[1])
if v then st, sa, sr, sb = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$') end
local tokens
if st then
  tokens = tonumber(st)
  local elapsed = now - tonumber(sa)
  if elapsed > 0 then tokens = math.min(tonumber(sb), tokens + elapsed * tonumber(sr)) end
  if conf == '1' then tokens = math.min(tokens, tonumber(burst)) else rate, burst = sr, sb end
else
  tokens = math.min(tonumber(init), tonumber(burst))
end
local granted, wait = 0, 0
for c in string.gmatch(ARGV[2], '%S+') do
  local cost = tonumber(c)
  if tokens < cost - 1e-9 * cost then
    wait = (cost - tokens) / tonumber(rate)
    break
  end
  tokens = tokens - cost
  granted = granted + 1
end
local state = tostring(tokens) .. ' ' .. t[1] .. '.' .. string.sub(t[2] + 1000000, 2)
  .. ' ' .. rate .. ' ' .. burst
local keep = math.max(tonumber(ttl), math.ceil(tonumber(burst) / tonumber(rate) * 2000))
redis.call('SET', KEYS[1], state, 'PX', keep)
return granted .. ' ' .. tostring(wait) .. ' ' .. state
"""

_REFUND = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local st, rest, sb = string.match(v, '^(%S+) (%S+ %S+) (%S+)$')
if not st then return 0 end
local tokens = math.min(tonumber(sb), tonumber(st) + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], tostring(tokens) .. ' ' .. rest .. ' ' .. sb, 'KEEPTTL')
return 1
"""


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> _Script:
        return cls(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


TAKE = _Script.of(_TAKE)
REFUND = _Script.of(_REFUND)


def _positive(value: float, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{field} must be a finite number > 0, got {value!r}")
    return float(value)


class RedisBackend:
    """Shared buckets (and fleet status) in the Redis at ``url``.

    - ``key_prefix``: namespaces every key (several systems can share one Redis);
    - ``timeout``: seconds to connect or to wait for a reply before the
      limiter falls back;
    - ``expected_replicas`` and ``fallback_rate``: while Redis is away each
      replica admits at ``fallback_rate`` (default ``rate / expected_replicas * 0.5``,
      never above ``rate``) with a burst scaled the same way;
    - ``retry_interval``/``max_retry_interval``: the backoff (doubling) between
      attempts to reach Redis again; ``jitter`` stretches waits by up to that
      fraction;
    - ``key_ttl``: the least time an idle bucket is kept (its retuned rate too).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "admission:",
        timeout: float = 0.25,
        expected_replicas: int = 1,
        fallback_rate: float | None = None,
        retry_interval: float = 0.5,
        max_retry_interval: float = 5.0,
        jitter: float = 0.1,
        key_ttl: float = 3600.0,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            shown = mask_url(url) if isinstance(url, str) else url
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {shown!r}")
        if not isinstance(key_prefix, str):
            raise ValueError(f"key_prefix must be a string, got {key_prefix!r}")
        if isinstance(expected_replicas, bool) or not (
            isinstance(expected_replicas, int) and expected_replicas >= 1
        ):
            raise ValueError(f"expected_replicas must be an int >= 1, got {expected_replicas!r}")
        if not (isinstance(jitter, int | float) and 0 <= jitter <= 1):
            raise ValueError(f"jitter must be in [0, 1], got {jitter!r}")
        self.url = url
        self.key_prefix = key_prefix
        self.timeout = _positive(timeout, "timeout")
        self.expected_replicas = expected_replicas
        self.fallback_rate = (
            None if fallback_rate is None else _positive(fallback_rate, "fallback_rate")
        )
        self.retry_interval = _positive(retry_interval, "retry_interval")
        self.max_retry_interval = max(
            self.retry_interval, _positive(max_retry_interval, "max_retry_interval")
        )
        self.jitter = float(jitter)
        self.key_ttl = _positive(key_ttl, "key_ttl")
        self._ttl = math.ceil(self.key_ttl * 1000)
        self._options = dict(client_options or {})
        self._redis: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settings: tuple[float, float, float, bool] | None = None
        self._head = ""
        self._errors: tuple[type[BaseException], ...] = (OSError,)

    def __repr__(self) -> str:
        return f"RedisBackend({mask_url(self.url)!r}, key_prefix={self.key_prefix!r})"

    # -- keys and the fallback ---------------------------------------------------

    def bucket_key(self, name: str) -> str:
        return f"{self.key_prefix}bucket:{name}"

    def fallback_limits(self, rate: float, burst: float) -> tuple[float, float]:
        share = 0.5 / self.expected_replicas
        fallback = rate * share if self.fallback_rate is None else min(self.fallback_rate, rate)
        return fallback, max(1.0, burst * share)

    # -- the shared bucket -------------------------------------------------------

    async def take(
        self,
        key: str,
        costs: Sequence[float],
        *,
        rate: float,
        burst: float,
        initial: float,
        configure: bool,
    ) -> TakeAnswer:
        # Two arguments, not one per figure: each costs the client an encoding step.
        settings = (rate, burst, initial, configure)
        if settings != self._settings:
            self._settings = settings
            self._head = f"{float(rate)!r} {float(burst)!r} {float(initial)!r} {int(configure)} "
            self._head += str(self._ttl)
        wanted = repr(float(costs[0])) if len(costs) == 1 else " ".join(map(repr, costs))
        reply = await self._script(TAKE, key, self._head, wanted)
        granted, wait, tokens, _, stored_rate, stored_burst = reply.split()
        return TakeAnswer(
            int(granted), float(wait), float(tokens), float(stored_rate), float(stored_burst)
        )

    async def refund(self, key: str, amount: float) -> None:
        await self._script(REFUND, key, repr(float(amount)))

    async def ping(self) -> None:
        """One PING round trip (the floor an admission is measured against)."""
        await self.run(self.redis().ping())

    # -- the client ----------------------------------------------------------------

    def redis(self) -> Redis:
        """The redis-py asyncio client of the running event loop (made on first use)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise BackendUnavailable(
                "RedisBackend needs asyncio (redis-py's asyncio client): no asyncio loop runs"
            ) from None
        if self._redis is None or self._loop is not loop:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError

            self._errors = (RedisError, OSError)

            self._redis = Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
                **self._options,
            )
            self._loop = loop
        return self._redis

    async def run(self, call: Awaitable[T]) -> T:
        """Await one redis-py call; no answer becomes :class:`BackendUnavailable`."""
        try:
            return await call
        except self._errors as exc:
            raise BackendUnavailable(_describe(exc)) from exc

    async def aclose(self) -> None:
        """Close the client's connections (a new use opens them again)."""
        client, self._redis = self._redis, None
        if client is not None:
            try:
                same_loop = asyncio.get_running_loop() is self._loop
            except RuntimeError:
                same_loop = False
            if same_loop:
                await client.aclose()

    async def _script(self, script: _Script, key: str, *args: str) -> Any:
        client = self.redis()
        command: Callable[..., Awaitable[Any]] = client.execute_command
        try:
            return await command("EVALSHA", script.sha, 1, key, *args)
        except self._errors as exc:
            from redis.exceptions import NoScriptError

            if not isinstance(exc, NoScriptError):
                raise BackendUnavailable(_describe(exc)) from exc
        # A restarted (or flushed) Redis forgot the script: load it once more.
        await self.run(client.script_load(script.source))
        return await self.run(command("EVALSHA", script.sha, 1, key, *args))


def _describe(exc: BaseException) -> str:
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text}"
