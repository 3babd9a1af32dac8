"""The agent as a systemd service: how fast it is ready, and what memory it holds idle.

Boots a systemd box (``tests/support/systemd_box.py``: systemd 252 as PID 1 in an overlay of
``/``), installs the repository's unit with the worktree's program and an on-premises
identity (``tests/support/agent_service.py``), and points the agent at the command
service stub on loopback, which holds an empty poll for ``--poll-wait`` seconds as the
real long poll does. It prints, measured in the same run:

- start to ready: the wall time of ``systemctl start codedeploy-agent``, which returns
  when the agent has sent READY=1 (Type=notify), median of ``--rounds`` starts; and the
  time until its STATUS line says it polls (identity found, client built);
- idle memory: the agent's VmRSS (its main pid, as the kernel counts it) after
  ``--idle-seconds`` of polling, and the unit's MemoryCurrent when the box's cgroup has
  the memory controller (on a hybrid cgroup host it has none: "not available");
- the baseline, in the same box: a ``Type=notify`` unit whose program is a bare Python
  (the agent's interpreter, ``-S``) that sends READY=1 and sleeps: its start-to-ready time
  and its VmRSS are what any Python service costs here.

Needs root, overlayfs and a writable cgroup2 (as the tests that boot a box).
Usage: python benchmarks/systemd_bench.py [--rounds 5] [--idle-seconds 30] [--poll-wait 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.agent_service import UNIT, AgentService, new_box_base  # noqa: E402
from tests.support.command_service import CommandServiceStub  # noqa: E402
from tests.support.signing import make_signing_kit  # noqa: E402
from tests.support.systemd_box import (  # noqa: E402
    SystemdBox,
    boot_systemd_box,
    systemd_box_unavailable_reason,
)
from tests.support.waiting import wait_until  # noqa: E402

FLOOR_UNIT = "bench-floor.service"
# The smallest Python service that tells systemd it is ready: the baseline.
FLOOR_PROGRAM = """import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.send(b"READY=1")
time.sleep(1e6)
"""


def _floor(box: SystemdBox, rounds: int) -> Tuple[float, Optional[int]]:
    """Median start-to-ready of the bare Python service, and its VmRSS in KiB."""
    box.write_file("/root/bench-floor.py", FLOOR_PROGRAM)
    box.write_file(
        f"/etc/systemd/system/{FLOOR_UNIT}",
        "[Service]\nType=notify\nNotifyAccess=main\n"
        f"ExecStart={sys.executable} -S /root/bench-floor.py\n",
    )
    box.systemctl("daemon-reload")
    times: List[float] = []
    for _ in range(rounds):
        began = time.monotonic()
        box.systemctl("start", FLOOR_UNIT)
        times.append(time.monotonic() - began)
        pid = box.systemctl("show", "-p", "MainPID", "--value", FLOOR_UNIT).stdout.strip()
        status = box.read_text(f"/proc/{pid}/status")
        box.systemctl("stop", FLOOR_UNIT)
    rss = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:")), None)
    return statistics.median(times), rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--poll-wait", type=float, default=5.0)
    args = parser.parse_args()
    reason = systemd_box_unavailable_reason()
    if reason is not None:
        print(f"systemd_bench: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="systemd-bench-") as folder:
        work = Path(folder)
        kit = make_signing_kit(work / "signing")
        (work / "box").mkdir()
        with (
            CommandServiceStub(poll_wait=args.poll_wait, hang_seconds=5) as stub,
            boot_systemd_box(work / "box") as box,
        ):
            service = AgentService(box, stub, new_box_base())
            service.install(kit)
            ready: List[float] = []
            polling: List[float] = []
            for _ in range(args.rounds):
                box.systemctl("stop", UNIT)
                began = time.monotonic()
                ready.append(service.start_timed())
                if not wait_until(lambda: service.status_text().startswith("polling ")):
                    print("systemd_bench: the agent never polled", file=sys.stderr)
                    return 1
                polling.append(time.monotonic() - began)
            time.sleep(args.idle_seconds)
            rss_kib = service.vm_rss_kib()
            memory = service.show("MemoryCurrent")
            box.systemctl("stop", UNIT)
            floor_ready, floor_rss = _floor(box, args.rounds)
    print(f"rounds: {args.rounds}, idle: {args.idle_seconds:g} s, long poll: {args.poll_wait:g} s")
    ready_median = statistics.median(ready)
    print(
        f"systemctl start -> ready (READY=1): median {ready_median * 1000:.0f} ms"
        f" (baseline, a bare Python service: {floor_ready * 1000:.0f} ms;"
        f" {ready_median / floor_ready:.2f}x)"
    )
    print(f"systemctl start -> polling (STATUS): median {statistics.median(polling) * 1000:.0f} ms")
    print(f"idle VmRSS of the agent: {rss_kib / 1024:.1f} MiB" if rss_kib else "VmRSS: unknown")
    if floor_rss:
        print(f"VmRSS of the bare Python service (baseline): {floor_rss / 1024:.1f} MiB")
    shown = (
        f"{int(memory) / 1024 / 1024:.1f} MiB"
        if memory.isdigit()
        else "not available (no memory controller)"
    )
    print(f"idle MemoryCurrent of the unit: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
