"""Token buckets shaped like ARM's and Compute's request limits.

ARM (per subscription, token-bucket model since 2024): reads 250 @ 25/s, writes 200 @ 10/s,
deletes 200 @ 10/s. Compute (per region, per subscription and per VM), from "Compute throttling
limits": PutVM/UpdateVM/DeleteVM 1500 @ 500/min per subscription and 12 @ 4/min per VM; LowCostGet
36 @ 12/min per VM, and per subscription 4000 per 3 minutes: the published page gives 8000/min,
but real recorded responses count down from 4000 (`Microsoft.Compute/LowCostGet3Min;3995`, wire
contract §5), and the simulator takes the stricter of the two. HighCostGet (lists) and GetOperation
(LRO status polls) are subscription-only; their published numbers were not available to us, so
900 @ 300/min and 15000 @ 5000/min are assumptions (the 15000 capacity matches the recorded
`GetOperation3Min;14994` header). Every number can be overridden in the fleet file.

Left out: per-principal ARM buckets (the simulator has one principal per subscription), regions
(one region per subscription), and the 15x "global" buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Limit:
    capacity: float
    per_second: float


ARM_DEFAULTS = {
    "reads": Limit(250, 25.0),
    "writes": Limit(200, 10.0),
    "deletes": Limit(200, 10.0),
}

# policy -> (subscription limit, per-VM limit or None)
COMPUTE_DEFAULTS: dict[str, tuple[Limit, Limit | None]] = {
    "UpdateVM": (Limit(1500, 500 / 60), Limit(12, 4 / 60)),
    "DeleteVM": (Limit(1500, 500 / 60), Limit(12, 4 / 60)),
    "LowCostGet": (Limit(4000, 4000 / 180), Limit(36, 12 / 60)),  # recorded LowCostGet3Min;3995
    "HighCostGet": (Limit(900, 300 / 60), None),
    "GetOperation": (Limit(15000, 5000 / 60), None),
}


class Bucket:
    __slots__ = ("capacity", "rate", "tokens", "stamp")

    def __init__(self, limit: Limit, scale: float, now: float) -> None:
        self.capacity = float(limit.capacity)
        self.rate = limit.per_second * scale
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self) -> float:
        """Seconds until one token is available (after refill)."""
        if self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else 3600.0


def _limit(raw: Any, where: str) -> Limit:
    if not isinstance(raw, dict) or "capacity" not in raw:
        raise ValueError(f"throttling.{where}: expected {{capacity: N, per_second: R}} or per_minute")
    if "per_second" in raw:
        rate = float(raw["per_second"])
    elif "per_minute" in raw:
        rate = float(raw["per_minute"]) / 60
    else:
        raise ValueError(f"throttling.{where}: give per_second or per_minute")
    return Limit(float(raw["capacity"]), rate)


class Throttle:
    """Decides whether a request may pass and reports remaining tokens as ARM headers."""

    def __init__(self, enabled: bool, overrides: dict[str, Any], scale: float) -> None:
        self.enabled = enabled
        self.scale = scale
        self.arm = dict(ARM_DEFAULTS)
        self.compute = dict(COMPUTE_DEFAULTS)
        for kind, raw in (overrides.get("arm") or {}).items():
            if kind not in self.arm:
                raise ValueError(f"throttling.arm: unknown bucket {kind!r} (reads, writes, deletes)")
            self.arm[kind] = _limit(raw, f"arm.{kind}")
        for policy, raw in (overrides.get("compute") or {}).items():
            if policy not in self.compute:
                raise ValueError(
                    f"throttling.compute: unknown policy {policy!r} ({', '.join(self.compute)})"
                )
            sub, res = self.compute[policy]
            if "subscription" in raw:
                sub = _limit(raw["subscription"], f"compute.{policy}.subscription")
            if "resource" in raw:
                res = _limit(raw["resource"], f"compute.{policy}.resource") if raw["resource"] else None
            self.compute[policy] = (sub, res)
        unknown = set(overrides) - {"arm", "compute"}
        if unknown:
            raise ValueError(f"throttling: unknown key {sorted(unknown)[0]!r} (enabled, arm, compute)")
        self._buckets: dict[tuple[str, ...], Bucket] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def _bucket(self, key: tuple[str, ...], limit: Limit, now: float) -> Bucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = Bucket(limit, self.scale, now)
        else:
            b.refill(now)
        return b

    def check(
        self, now: float, sub: str, arm_kind: str | None, policy: str | None, vm_key: str | None,
    ) -> tuple[dict[str, str], tuple[str, float, float] | None]:
        """Take one token from every bucket that applies.

        Returns (headers, refusal); refusal is (bucket name, seconds to wait, capacity) and no
        token is taken when any bucket is empty.
        """
        if not self.enabled:
            return {}, None
        picked: list[tuple[str, Bucket, str]] = []
        if arm_kind:
            picked.append((
                f"Subscription{arm_kind.capitalize()}",
                self._bucket(("arm", sub, arm_kind), self.arm[arm_kind], now),
                f"x-ms-ratelimit-remaining-subscription-{arm_kind}",
            ))
        if policy:
            sub_limit, res_limit = self.compute[policy]
            picked.append((f"{policy}3Min", self._bucket(("c", sub, policy), sub_limit, now), "res"))
            if res_limit is not None and vm_key:
                picked.append((
                    f"{policy}PerVM3Min",
                    self._bucket(("c", sub, policy, vm_key), res_limit, now), "res",
                ))
        for name, b, _ in picked:
            if b.tokens < 1:
                return {}, (name, b.wait(), b.capacity)
        headers: dict[str, str] = {}
        res_items = []
        for name, b, header in picked:
            b.tokens -= 1
            if header == "res":
                res_items.append(f"Microsoft.Compute/{name};{int(b.tokens)}")
            else:
                headers[header] = str(int(b.tokens))
        if res_items:
            headers["x-ms-ratelimit-remaining-resource"] = ",".join(res_items)
        return headers, None

    def reserve(self, now: float, sub: str, policy: str, vm_key: str | None) -> float:
        """Queue for one token of a Compute policy (subscription and per-VM buckets) instead of being
        refused: the token is taken now (the count may go below zero) and the answer is how many
        seconds until it is really there. ComputeSchedule's own VM operations wait this way."""
        if not self.enabled:
            return 0.0
        sub_limit, res_limit = self.compute[policy]
        picked = [self._bucket(("c", sub, policy), sub_limit, now)]
        if res_limit is not None and vm_key:
            picked.append(self._bucket(("c", sub, policy, vm_key), res_limit, now))
        wait = max(b.wait() for b in picked)
        for b in picked:
            b.tokens -= 1
        return wait


def retry_after_seconds(wait: float) -> int:
    """ARM sends whole seconds; never 0 (the SDK treats 0 as absent and sleeps 30 s)."""
    return max(1, math.ceil(wait))
