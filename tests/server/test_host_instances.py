"""HostInstances: a host's instance is read once per window, and again after it."""

from __future__ import annotations

from typing import List, Optional

from server.host_instances import HostInstances


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_instance_is_read_once_per_window_then_again() -> None:
    clock = _Clock()
    reads: List[str] = []
    registered: Optional[str] = "web-1"

    def read() -> Optional[str]:
        reads.append("read")
        return registered

    instances = HostInstances(2.0, clock)
    assert instances.get("arn:host", read) == "web-1"
    clock.now += 1.9
    registered = None  # deregistered meanwhile: seen once the window is over
    assert instances.get("arn:host", read) == "web-1"
    assert len(reads) == 1
    clock.now += 0.2
    assert instances.get("arn:host", read) is None
    assert len(reads) == 2
    # An unknown host is remembered as unknown for one window too.
    registered = "web-1"
    assert instances.get("arn:host", read) is None
    clock.now += 2.0
    assert instances.get("arn:host", read) == "web-1"


def test_a_window_of_zero_reads_every_time() -> None:
    reads: List[int] = []
    instances = HostInstances()
    for _ in range(3):
        instances.get("arn:host", lambda: str(reads.append(1)))
    assert len(reads) == 3
