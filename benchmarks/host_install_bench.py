"""Installing from the release bundle: its size, and how long ``install`` takes on a host.

Builds this checkout's bundle, boots a systemd box (``tests/support/systemd_box.py``), unpacks
the bundle there and, ``--rounds`` times, runs ``install auto`` with no network (a network
namespace of its own) and then ``install --uninstall --purge``. It prints, measured in the
same run:

- the bundle's size and build time;
- install: the wall time of ``install auto``, until the service is active and the agent
  has said it is ready (median of the rounds);
- the baseline: what any offline install of these wheels costs on the same host, a bare
  ``python -m venv --without-pip`` plus ``pip install --isolated --no-index`` of the
  bundle's wheels (pip run from the bundle's wheel, as the installer does), median too.

Needs root, overlayfs and a writable cgroup2 (as the tests that boot a box).
Usage: python benchmarks/host_install_bench.py [--rounds 3]
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

from tests.support.host_install import Installer, build_bundle, bundles_folder  # noqa: E402
from tests.support.systemd_box import boot_systemd_box, systemd_box_unavailable_reason  # noqa: E402


def _timed(action: object) -> float:
    began = time.monotonic()
    done = action() if callable(action) else None
    if getattr(done, "returncode", 0) != 0:
        raise SystemExit(f"host_install_bench: a step failed: {done}")
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = systemd_box_unavailable_reason()
    if reason is not None:
        print(f"host_install_bench: {reason}", file=sys.stderr)
        return 1
    with bundles_folder() as home, tempfile.TemporaryDirectory(prefix="install-bench-") as work:
        began = time.monotonic()
        bundle = build_bundle(REPO, home / "dist")
        build_seconds = time.monotonic() - began
        size = bundle.stat().st_size
        (Path(work) / "box").mkdir()
        with boot_systemd_box(Path(work) / "box") as box:
            installer = Installer(box)
            script = installer.unpack(bundle)
            top = script.rsplit("/", 1)[0]
            installs: List[float] = []
            floors: List[float] = []
            for round_number in range(args.rounds):
                installs.append(_timed(lambda: installer.run(script, "auto", own_network=True)))
                _timed(lambda: installer.run(script, "--uninstall", "--purge"))
                venv = f"/root/floor-{round_number}"
                pip = box.run(["sh", "-c", f"ls {top}/tools/pip-*.whl"]).stdout.strip()
                wheel = box.run(["sh", "-c", f"ls {top}/wheel/*.whl"]).stdout.strip()

                def floor(venv: str = venv, pip: str = pip, wheel: str = wheel) -> object:
                    made = box.run(["/usr/bin/python3", "-m", "venv", "--without-pip", venv])
                    if made.returncode != 0:
                        return made
                    return box.run(
                        [
                            f"{venv}/bin/python",
                            f"{pip}/pip",
                            "install",
                            "--isolated",
                            "--no-index",
                            "--quiet",
                            "--find-links",
                            f"{top}/wheelhouse",
                            wheel,
                        ],
                        own_network=True,
                        timeout=300,
                    )

                floors.append(_timed(floor))
    install, base = statistics.median(installs), statistics.median(floors)
    print(f"bundle: {bundle.name}, {size / 1024 / 1024:.1f} MiB, built in {build_seconds:.1f} s")
    print(f"rounds: {args.rounds}")
    print(f"install auto (offline, until ready): median {install:.2f} s")
    print(f"baseline (venv + pip install of the same wheels): median {base:.2f} s")
    print(f"ratio: {install / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
