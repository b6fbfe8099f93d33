"""Pacing of the daemon's upstream calls: at most `max_refresh_rate` per second.

With hundreds of profiles (every synced account and role) the daemon must not
mint them all at once: not at start-up (the warm set) and not when their
credentials come due together. `TokenBucket` spaces the calls it grants at
least 1/rate apart (a burst of one), so no whole second ever sees more than
`rate` of them; callers block until their turn. Exports that a user waits for
are not paced: only scheduled refreshes and warm-up are.

The clock and the sleep are injected, so tests drive time without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

#: the settings key's default and documented range (calls per second)
DEFAULT_RATE = 5
RATE_RANGE = (1, 100)


class TokenBucket:
    """Grants at most `rate` calls per second, `burst` of them back to back."""

    def __init__(self, rate: float, *, burst: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = float(rate), float(burst)
        self.clock, self.sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()
        #: calls granted, and the seconds callers spent waiting (status, logs, tests)
        self.granted = 0
        self.waited = 0.0

    def reserve(self) -> float:
        """Take the next slot; the seconds until it starts (0: now)."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            self.granted += 1
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            self.waited += wait
            return wait

    def acquire(self) -> float:
        """Block until a call may start; the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self.sleep(wait)
        return wait

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = float(rate)


def needed_rate(serving_seconds: Iterable[float]) -> float:
    """Upstream calls per second that keeping these profiles fresh takes: each
    is minted once per serving period (lifetime - refresh window)."""
    return sum(1.0 / max(1.0, s) for s in serving_seconds)
