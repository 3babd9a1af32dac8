"""``install``: the options, the installer's log file, and one line for every failure.

Where the agent comes from: the release bundle this script sits in; or ``--bundle`` (a
bundle's tar.gz or its unpacked folder); or, run from a checkout (``scripts/install``), a
bundle built there first by ``release/build_release.py`` (the only case that needs the
package index). Everything is logged to ``/var/log/codedeploy-agent-install.log``; the
terminal gets a few progress lines, and a failure is one line on stderr and exit status 1
(2 for a bad command line), after the host has been put back as it was.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Callable, NoReturn, Optional, Sequence, TextIO

from host_install.actions import InstallOptions, check_proxy, install_agent, say, uninstall_agent
from host_install.bundle import (
    MANIFEST,
    Bundle,
    check_bundle_fits_host,
    host_glibc,
    host_machine,
    read_bundle_on_disk,
    unpack_bundle_on_disk,
)
from host_install.commands import last_error_line, run_command
from host_install.errors import InstallError
from host_install.layout import HostLayout
from host_install.server import (
    SERVER_EXTRA,
    add_server_wheels_on_disk,
    check_bundle_has_server,
    check_server_link_is_free,
    install_server,
    uninstall_server,
)
from host_install.service import systemd_runs_host
from host_install.undo import UndoJournal

PROGRAM = "install"
# Held for the whole run: two installs at once (user data and an operator) would undo
# each other's steps. On /run, so it leaves nothing behind on the host.
LOCK_FILE = Path("/run/codedeploy-agent-install.lock")
EXIT_FAILED = 1
EXIT_USAGE = 2

_DESCRIPTION = """Install, upgrade or remove the CodeDeploy host agent (Python work-alike).
Run as root; no question is asked, so it fits EC2 user data. With no option it installs the
agent from the release bundle this script sits in (or upgrades the installed one to it),
enables and starts the codedeploy-agent service, and returns once the agent is ready."""

_EPILOG = """what stays where:
  /opt/codedeploy-agent-py            the program (one virtual environment per release)
  /usr/bin/codedeploy-agent, codedeploy-local   the commands
  /etc/systemd/system/codedeploy-agent.service  the unit
  /etc/codedeploy-agent/conf          the configuration (never overwritten unless --config)
  /var/log/aws/codedeploy-agent       the agent's logs
  /opt/codedeploy-agent               the deployment root and the agent's state
  /var/log/codedeploy-agent-install.log   this installer's log
with --with-server, also:
  /usr/bin/codedeploy-server, /etc/systemd/system/codedeploy-server.service
  /etc/codedeploy-server              its server.yml (never overwritten) and master key
  /var/lib/codedeploy-server          its data folder (kept by --uninstall without --purge)

exit statuses: 0 done; 1 failed (one line says why; the host is as it was); 2 bad command line
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{PROGRAM}: {message} (see {PROGRAM} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROGRAM,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "mode",
        nargs="?",
        default="auto",
        choices=["auto"],
        help="auto (the default; accepted as the AWS agent's installer accepts it)",
    )
    parser.add_argument(
        "--bundle", type=Path, help="install this release bundle (.tar.gz or folder)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="install this file as codedeployagent.yml, replacing the present one (it is"
        " checked by the agent first)",
    )
    parser.add_argument(
        "--on-premises-config",
        type=Path,
        help="install this file as codedeploy.onpremises.yml (mode 0600): the identity and"
        " credentials of an on-premises host",
    )
    parser.add_argument(
        "--proxy",
        help="proxy URI: written as :proxy_uri: into a new configuration, and used by pip"
        " when a checkout's dependencies come from the package index",
    )
    parser.add_argument(
        "--no-start", action="store_true", help="install and enable the service, do not start it"
    )
    parser.add_argument(
        "--wait-for-idle",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="upgrade: how long to wait for a running deployment command to finish before"
        " giving up with nothing changed (default 3600)",
    )
    parser.add_argument(
        "--with-server",
        action="store_true",
        help="also install codedeploy-server as a service (a bundle built --with-server)",
    )
    parser.add_argument(
        "--uninstall",
        action="store_true",
        help="stop and remove the agent; keep its configuration, deployment root and logs",
    )
    parser.add_argument("--purge", action="store_true", help="with --uninstall: remove those too")
    parser.add_argument("--invoked-as", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def _configure_log(log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    logger = logging.getLogger("install")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    os.chmod(log_file, 0o600)


def _take_install_lock() -> TextIO:
    stream = open(LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held until the end
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        stream.seek(0)
        holder = stream.read().strip() or "another process"
        stream.close()
        raise InstallError(
            f"another install is running ({holder}); try again when it ends"
        ) from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"pid {os.getpid()}\n")
    stream.flush()
    return stream


def _on_signal(number: int, _frame: Optional[FrameType]) -> None:
    # Raised as an exception so the undo journal runs before the installer ends.
    raise InstallError(f"interrupted by {signal.Signals(number).name}")


def _bundle_next_to(invoked_as: Optional[Path]) -> Optional[Path]:
    if invoked_as is None:
        return None
    folder = invoked_as.resolve().parent
    return folder if (folder / MANIFEST).is_file() else None


def _checkout_of(invoked_as: Optional[Path]) -> Optional[Path]:
    if invoked_as is None:
        return None
    repo = invoked_as.resolve().parent.parent
    if (repo / "release" / "build_release.py").is_file() and (repo / "pyproject.toml").is_file():
        return repo
    return None


def _build_bundle_from_checkout(
    repo: Path, work: Path, proxy: Optional[str], with_server: bool
) -> Path:
    """Build a bundle from the checkout with this Python and the package index."""
    say(f"building a release bundle from the checkout {repo} (needs the package index)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if proxy:
        env.update(HTTPS_PROXY=proxy, HTTP_PROXY=proxy, PIP_PROXY=proxy)
    argv = [sys.executable, str(repo / "release" / "build_release.py"), "--dist", str(work)]
    if with_server:
        argv.append("--with-server")
    result = run_command(argv, timeout=1800.0, env=env)
    if result.returncode != 0:
        reason = last_error_line(result.stderr, result.returncode)
        if "No module named pip" in result.stderr:
            reason = f"{sys.executable} has no pip (install python3-pip, or use a release bundle)"
        raise InstallError(
            f"cannot build the agent from this checkout: {reason.removeprefix('build-release: ')}"
            " (is the package index reachable? --proxy sets a proxy)"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def _open_bundle(options: argparse.Namespace, work: Path) -> Bundle:
    given: Optional[Path] = options.bundle
    if given is None:
        given = _bundle_next_to(options.invoked_as)
    if given is None:
        repo = _checkout_of(options.invoked_as)
        if repo is None:
            raise InstallError(
                "no release bundle here: run the install of a bundle, or give --bundle"
            )
        given = _build_bundle_from_checkout(repo, work, options.proxy, options.with_server)
    if not given.exists():
        raise InstallError(f"--bundle {given}: no such file or folder")
    folder = given
    if given.is_file():
        folder = unpack_bundle_on_disk(given, work / "bundle")
    bundle = read_bundle_on_disk(folder)
    check_bundle_fits_host(bundle, host_machine(), host_glibc())
    return bundle


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = build_parser().parse_args(list(argv) if argv is not None else None)
    if options.purge and not options.uninstall:
        print(f"{PROGRAM}: --purge goes with --uninstall", file=sys.stderr)
        return EXIT_USAGE
    if options.wait_for_idle < 0 or options.wait_for_idle != options.wait_for_idle:
        print(f"{PROGRAM}: --wait-for-idle must be 0 or more seconds", file=sys.stderr)
        return EXIT_USAGE
    if os.geteuid() != 0:
        print(f"{PROGRAM}: must run as root", file=sys.stderr)
        return EXIT_FAILED
    layout = HostLayout()
    try:
        _configure_log(layout.log_file)
    except OSError as error:
        print(
            f"{PROGRAM}: cannot write the log {layout.log_file}: {error.strerror}", file=sys.stderr
        )
        return EXIT_FAILED
    log = logging.getLogger("install")
    log.info("install %s", " ".join(argv or []))
    try:
        lock = _take_install_lock()
    except InstallError as error:
        print(f"{PROGRAM}: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, _on_signal)
    started = time.monotonic()
    try:
        return _run_locked(options, layout, log, started)
    finally:
        lock.close()


def _run_locked(
    options: argparse.Namespace, layout: HostLayout, log: logging.Logger, started: float
) -> int:
    try:
        if options.uninstall:
            uninstall_server(layout, purge=options.purge, with_systemd=systemd_runs_host())
            uninstall_agent(layout, purge=options.purge)
        else:
            if options.proxy is not None:
                check_proxy(options.proxy)
            _install(options, layout)
    except InstallError as error:
        log.error("failed: %s", error.message)
        print(f"{PROGRAM}: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        message = f"{error.strerror or error}{':' if where else ''}{where}"
        log.exception("failed: %s", message)
        after = "run --uninstall again to finish" if options.uninstall else "nothing was changed"
        print(f"{PROGRAM}: {message}; {after} (see {layout.log_file})", file=sys.stderr)
        return EXIT_FAILED
    log.info("done in %.1f s", time.monotonic() - started)
    return 0


def _install(options: argparse.Namespace, layout: HostLayout) -> None:
    if not options.with_server and layout.server_unit_file.is_file():
        # The server runs from the agent's release: an upgrade without it would switch the
        # server to a release without its dependencies.
        say("codedeploy-server is installed here: upgrading it too (as --with-server)")
        options.with_server = True
    settings = InstallOptions(
        config_file=options.config.resolve() if options.config else None,
        on_premises_file=options.on_premises_config.resolve()
        if options.on_premises_config
        else None,
        proxy=options.proxy,
        start=not options.no_start,
        wait_for_idle_seconds=options.wait_for_idle,
        extras=(SERVER_EXTRA,) if options.with_server else (),
    )
    work = Path(tempfile.mkdtemp(prefix="codedeploy-install."))
    try:
        bundle = _open_bundle(options, work)
        also = None
        if options.with_server:
            also = _server_step(bundle, layout, start=settings.start)
        install_agent(bundle, settings, layout, sys.executable, also)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"installed version {bundle.version}; see `systemctl status codedeploy-agent`")


def _server_step(
    bundle: Bundle, layout: HostLayout, *, start: bool
) -> Callable[[UndoJournal, Path, bool], None]:
    """What --with-server adds to the install, checked before the host changes."""
    check_bundle_has_server(bundle)
    check_server_link_is_free(layout)
    if not systemd_runs_host():
        raise InstallError("--with-server needs systemd: this host does not run it")

    def install(journal: UndoJournal, release: Path, upgrade: bool) -> None:
        add_server_wheels_on_disk(bundle, release)
        install_server(bundle, layout, journal, release, start=start, upgrade=upgrade)

    return install
