"""``server.rateLimit``: token buckets per client IP and route prefix (stage ``rate-limit``).

A bucket holds up to ``max`` tokens and refills ``max`` per ``timeWindow``; a
request takes one, and an empty bucket is a ``429`` ``WATT_RATE_LIMITED``
(problem+json) with ``Retry-After`` (seconds until a token is back).  Buckets
live in one LRU map of at most ``maxClients`` entries, so a flood of new
addresses costs bounded memory (an evicted client starts again with a full
bucket).  The client is ``req.client`` — the peer, or what a trusted proxy
says (``server.trustedProxies``).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from . import Stage, problem, register_stage


class _Rule:
    __slots__ = ("capacity", "prefix", "rate")

    def __init__(self, prefix: str, capacity: int, window_ms: int) -> None:
        self.prefix = prefix
        self.capacity = float(capacity)
        self.rate = capacity / (window_ms / 1000)  # tokens per second

    def matches(self, path: str) -> bool:
        prefix = self.prefix
        return prefix == "/" or path == prefix or path.startswith(prefix + "/") \
            or (prefix.endswith("/") and path.startswith(prefix))


class RateLimit(Stage):
    def __init__(self, rules: list[_Rule], default: _Rule | None, max_clients: int,
                 clock=time.monotonic) -> None:
        self.rules = sorted(rules, key=lambda r: -len(r.prefix))  # longest prefix first
        self.default = default
        self.max_clients = max_clients
        self.clock = clock
        self.buckets: OrderedDict[tuple, list] = OrderedDict()  # (ip, prefix) -> [tokens, t]

    def _rule(self, path: str) -> _Rule | None:
        for rule in self.rules:
            if rule.matches(path):
                return rule
        return self.default

    def check(self, req):
        rule = self._rule(req.path)
        if rule is None:
            return None
        key = (req.client[0] if req.client else "", rule.prefix)
        now = self.clock()
        buckets = self.buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_clients:
                buckets.popitem(last=False)  # the least recently seen client
            bucket = buckets[key] = [rule.capacity, now]
        else:
            buckets.move_to_end(key)
            bucket[0] = min(rule.capacity, bucket[0] + (now - bucket[1]) * rule.rate)
            bucket[1] = now
        if bucket[0] >= 1:
            bucket[0] -= 1
            return None
        wait = max(1, math.ceil((1 - bucket[0]) / rule.rate))
        return problem(429, "WATT_RATE_LIMITED", "Too Many Requests",
                       f"rate limit of {int(rule.capacity)} requests exceeded; retry in "
                       f"{wait} s", headers=[(b"retry-after", str(wait).encode()),
                                             (b"ratelimit-limit", b"%d" % rule.capacity),
                                             (b"ratelimit-remaining", b"0")])


def factory(config, info):
    limit = config.server.rate_limit
    if limit is None:
        return None
    rules = [_Rule(r.prefix, r.max, r.time_window) for r in limit.routes]
    default = _Rule("", limit.max, limit.time_window) if limit.max is not None else None
    if not rules and default is None:
        return None
    return RateLimit(rules, default, limit.max_clients)


register_stage("rate-limit", factory)
