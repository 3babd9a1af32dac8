"""The agent as a systemd service: how fast it is ready, and what memory it holds idle.

Boots a systemd box (``tests/support_systemd.py``: systemd 252 as PID 1 in an overlay of
``/``), installs the repository's unit with the worktree's program and an on-premises
identity (``tests/support_agent_service.py``), and points the agent at the command
service stub on loopback, which holds an empty poll for ``--poll-wait`` seconds as the
real long poll does. It prints, measured in the same run:

- start to ready: the wall time of ``systemctl start codedeploy-agent``, which returns
  when the agent has sent READY=1 (Type=notify), median of ``--rounds`` starts; and the
  time until its STATUS line says it polls (identity found, client built);
- idle memory: the agent's VmRSS (its main pid, as the kernel counts it) after
  ``--idle-seconds`` of polling, and the unit's MemoryCurrent when the box's cgroup has
  the memory controller (on a hybrid cgroup host it has none: "not available").

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
from typing import List

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.command_poller.poller_helpers import wait_until  # noqa: E402
from tests.support_agent_service import UNIT, AgentService, new_box_base  # noqa: E402
from tests.support_command_service import CommandServiceStub  # noqa: E402
from tests.support_signing import make_signing_kit  # noqa: E402
from tests.support_systemd import boot_systemd_box, systemd_box_unavailable_reason  # noqa: E402


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
    print(f"rounds: {args.rounds}, idle: {args.idle_seconds:g} s, long poll: {args.poll_wait:g} s")
    print(f"systemctl start -> ready (READY=1): median {statistics.median(ready) * 1000:.0f} ms")
    print(f"systemctl start -> polling (STATUS): median {statistics.median(polling) * 1000:.0f} ms")
    print(f"idle VmRSS of the agent: {rss_kib / 1024:.1f} MiB" if rss_kib else "VmRSS: unknown")
    shown = (
        f"{int(memory) / 1024 / 1024:.1f} MiB"
        if memory.isdigit()
        else "not available (no memory controller)"
    )
    print(f"idle MemoryCurrent of the unit: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
