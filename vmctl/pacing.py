"""Client-side pacing per subscription, so bursts stay inside ARM's and Compute's buckets.

Local token buckets start from Azure's published limits (ARM writes 200 @ 10/s, reads 250 @ 25/s;
Compute UpdateVM and DeleteVM 1500 @ 500/min per subscription), scaled by `scale` (the simulator
runs time faster). Every response's `x-ms-ratelimit-remaining-*` headers pull the local count down
when the service says fewer remain (another client shares the subscription): vmctl slows down
before a 429, not after. A 429's Retry-After blocks the bucket until then. Thread-safe.

Hand-written rather than a rate-limiting library: it must reserve a token in several buckets at
once, be pulled down by the service's `x-ms-ratelimit-remaining-*` counts and blocked by a
Retry-After, which no general-purpose limiter we found offers together.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

RESERVE = 2  # leave a couple of tokens for other clients of the subscription


@dataclass
class Rate:
    capacity: float
    per_second: float


DEFAULTS = {
    "writes": Rate(200, 10.0),
    "reads": Rate(250, 25.0),
    "UpdateVM": Rate(1500, 500 / 60),
    "DeleteVM": Rate(1500, 500 / 60),
    "HighCostGet": Rate(900, 300 / 60),  # VM lists; Azure's number unpublished, the simulator's assumption
    # GET VM / instance view: 4,000 per 3 minutes per subscription, as recorded responses count
    # down (`Microsoft.Compute/LowCostGet3Min;3995`, wire contract §5)
    "LowCostGet": Rate(4000, 4000 / 180),
    # operation status polls; unpublished, recorded responses count down from 15,000
    # (`GetOperation3Min;14994`), the simulator's assumption of 5,000/min refill
    "GetOperation": Rate(15000, 5000 / 60),
}
ACTION_POLICY = {"deallocate": "DeleteVM"}  # every other VM action counts as UpdateVM
_HEADER_KIND = {
    "x-ms-ratelimit-remaining-subscription-writes": "writes",
    "x-ms-ratelimit-remaining-subscription-reads": "reads",
}


class _Bucket:
    def __init__(self, rate: Rate, now: float) -> None:
        self.capacity = rate.capacity
        self.rate = rate.per_second
        self.tokens = rate.capacity
        self.stamp = now
        self.blocked_until = 0.0

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until the next token (reservations already made push it later)."""
        self.refill(now)
        lead = max(0.0, self.stamp - now, self.blocked_until - now)  # refill has not resumed yet
        if self.tokens >= 1:
            return lead
        return lead + (1 - self.tokens) / self.rate


class Pacer:
    def __init__(self, scale: float = 1.0, rates: dict[str, Rate] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scale = scale
        self.rates = {k: Rate(v.capacity, v.per_second * scale) for k, v in (rates or DEFAULTS).items()}
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, sub: str, kind: str) -> _Bucket:
        b = self._buckets.get((sub, kind))
        if b is None:
            b = self._buckets[(sub, kind)] = _Bucket(self.rates[kind], self.clock())
        return b

    def kinds_for(self, action: str | None) -> list[str]:
        if action is None:
            return ["reads"]
        return ["writes", ACTION_POLICY.get(action, "UpdateVM")]

    def rate(self, kind: str) -> float:
        """Tokens per second the bucket refills (scaled)."""
        return self.rates[kind].per_second

    def available(self, sub: str, kind: str) -> float:
        """Tokens in the bucket now (negative: reserved ahead)."""
        with self._lock:
            b = self._bucket(sub, kind)
            b.refill(self.clock())
            return b.tokens

    def backlog(self, sub: str, kinds: list[str]) -> float:
        """Seconds until a token is free in every bucket (0: now), without reserving one: how far
        the queue of callers already reaches into the future."""
        with self._lock:
            now = self.clock()
            return max((self._bucket(sub, k).wait(now) for k in kinds), default=0.0)

    def acquire(self, sub: str, kinds: list[str], stop: threading.Event | None = None, n: int = 1) -> bool:
        """Reserve `n` tokens in every bucket and sleep once until they are due (a queue, not a
        spin: the count may go below zero, each caller gets the next free slot). False if `stop`
        was set."""
        with self._lock:
            now = self.clock()
            wait = 0.0
            for k in kinds:
                b = self._bucket(sub, k)
                b.tokens -= n - 1
                wait = max(wait, b.wait(now))
                b.tokens -= 1
        while wait > 0:
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)
            with self._lock:
                now = self.clock()
                if all(self._bucket(sub, k).blocked_until <= now for k in kinds):
                    break
                # a 429 arrived while we slept: give the slot back and queue again behind the block
                wait = 0.0
                for k in kinds:
                    b = self._bucket(sub, k)
                    b.tokens += 1
                    wait = max(wait, b.wait(now))
                    b.tokens -= 1
        return True

    def observe(self, sub: str, headers: dict[str, str]) -> None:
        """Trust the service when it says fewer tokens remain than we think."""
        with self._lock:
            now = self.clock()
            for header, kind in _HEADER_KIND.items():
                value = headers.get(header)
                if value and value.isdigit():
                    b = self._bucket(sub, kind)
                    b.refill(now)
                    b.tokens = min(b.tokens, float(value) - RESERVE)
            res = headers.get("x-ms-ratelimit-remaining-resource", "")
            for item in res.split(","):
                name, _, value = item.strip().partition(";")
                policy = name.rsplit("/", 1)[-1]
                for kind in ("UpdateVM", "DeleteVM", "LowCostGet", "HighCostGet", "GetOperation"):
                    if policy == f"{kind}3Min" and value.isdigit():
                        b = self._bucket(sub, kind)
                        b.refill(now)
                        b.tokens = min(b.tokens, float(value) - RESERVE)

    def penalize(self, sub: str, kinds: list[str], retry_after: float) -> None:
        """A 429 said wait: nobody sends on these buckets until then."""
        with self._lock:
            now = self.clock()
            until = now + retry_after
            for k in kinds:
                b = self._bucket(sub, k)
                b.refill(now)
                b.blocked_until = max(b.blocked_until, until)
                b.tokens = min(b.tokens, 0.0)
                b.stamp = max(b.stamp, until)  # nothing refills while blocked: no burst when it lifts
