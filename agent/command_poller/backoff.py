"""How long the poll loop waits after a failed call to the command service.

Exponential back-off with jitter (docs/behaviour.md section 10): the ceiling doubles with each
failure in a row from ``wait_after_error`` up to a cap, and the wait is drawn at random
below it so a fleet of hosts that lost the service together does not come back together.
The draw is over the upper half of the range, never near zero, so a failing poll never
spins. Throttling starts higher and has a higher cap: the service asked us to slow down.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """The back-off rule; ``failures`` counts failed polls in a row (1 = the first)."""

    base_seconds: float = 30.0
    cap_seconds: float = 300.0
    throttle_factor: float = 4.0
    throttle_cap_seconds: float = 900.0

    def ceiling(self, failures: int, *, throttled: bool = False) -> float:
        """The longest wait after ``failures`` failures in a row."""
        exponent = min(max(failures, 1) - 1, 32)
        if throttled:
            grown = self.base_seconds * self.throttle_factor * (2.0**exponent)
            return min(grown, max(self.throttle_cap_seconds, self.cap_seconds))
        return min(self.base_seconds * (2.0**exponent), self.cap_seconds)

    def delay(self, failures: int, *, throttled: bool = False, rng: random.Random) -> float:
        """A jittered wait in ``[ceiling / 2, ceiling]``."""
        ceiling = self.ceiling(failures, throttled=throttled)
        return rng.uniform(ceiling / 2.0, ceiling)
