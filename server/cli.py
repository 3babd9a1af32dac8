"""The ``codedeploy-server`` program: ``run``, ``keys ...``, ``signer`` and ``check-config``.

``run`` serves until SIGTERM. The admin commands work on the data folder and database
whether or not a server is running (SQLite in WAL mode and PostgreSQL both allow it), so
a key issued or revoked here is seen by a running server within ``key_cache_seconds``.
A bad command line or configuration is one line and exit 2; a failure to do what was
asked (a database that cannot be reached, an unknown key id) is one line and exit 1;
never a traceback for either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from agent.command_line import EXIT_USAGE, OneLineArgumentParser
from agent.logging.setup import configure_logging
from server.errors import ServerConfigError, ServerError

PROGRAM = "codedeploy-server"
EXIT_FAILURE = 1

_EPILOG = """\
verbs:
  run                         serve both APIs until SIGTERM; prints "listening on <URL>"
  keys create-operator NAME   a key for the AWS CLI (prints JSON: AccessKeyId, SecretAccessKey, Region)
  keys create-host NAME       a key for the on-premises instance NAME (prints its codedeploy.onpremises.yml)
  keys revoke ACCESS_KEY_ID   refuse that key from now on (a running server within seconds)
  keys list [--json]          ids, kinds and names of the keys; never a secret
  signer                      prints JSON: ca_file (for agents' deployment_signer_ca_file), signer_name
  check-config                checks the configuration (and TLS files) without changing anything;
                              prints JSON: config_file, listen, data_dir, database (no password), tls

exit status: 0 done, 1 failed, 2 bad command line or configuration.
The configuration file is /etc/codedeploy-server/server.yml unless --config names one;
see docs/server.md for its keys.
"""


def _parser() -> argparse.ArgumentParser:
    shared = OneLineArgumentParser(add_help=False)
    shared.add_argument("--data-dir", default=argparse.SUPPRESS, help="the data folder")
    shared.add_argument("--database-url", default=argparse.SUPPRESS, help="SQLAlchemy URL")
    parser = OneLineArgumentParser(
        prog=PROGRAM,
        description="The self-hosted CodeDeploy service.",
        epilog=_EPILOG,
        parents=[shared],
    )
    parser.add_argument("--config", type=Path, default=None, help="the configuration file")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=OneLineArgumentParser)
    run = verbs.add_parser("run", parents=[shared], help="serve until SIGTERM")
    run.add_argument("--listen", default=argparse.SUPPRESS, help="HOST:PORT")
    keys = verbs.add_parser("keys", parents=[shared], help="issue, revoke and list access keys")
    actions = keys.add_subparsers(dest="action", required=True, parser_class=OneLineArgumentParser)
    for action, argument in (
        ("create-operator", "NAME"),
        ("create-host", "INSTANCE_NAME"),
        ("revoke", "ACCESS_KEY_ID"),
    ):
        actions.add_parser(action, parents=[shared]).add_argument("name", metavar=argument)
    listing = actions.add_parser("list", parents=[shared])
    listing.add_argument("--json", action="store_true", help="one JSON document")
    verbs.add_parser("signer", parents=[shared], help="where agents find the signer's CA")
    verbs.add_parser(
        "check-config", parents=[shared], help="check the configuration; change nothing"
    )
    return parser


def _overrides(arguments: argparse.Namespace) -> Dict[str, Any]:
    names = {"data_dir": "data_dir", "database_url": "database_url", "listen": "listen"}
    return {
        key: getattr(arguments, name) for name, key in names.items() if hasattr(arguments, name)
    }


def main(argv: Optional[List[str]] = None) -> int:
    from server.configuration import read_server_config

    arguments = _parser().parse_args(argv)
    try:
        config = read_server_config(arguments.config, _overrides(arguments))
    except ServerConfigError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    configure_logging(verbose=config.verbose, utc=True)
    try:
        if arguments.verb == "run":
            return _run(config)
        if arguments.verb == "signer":
            return _signer(config)
        if arguments.verb == "check-config":
            return _check_config(config)
        return _keys(config, arguments)
    except ServerError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr, flush=True)
        return EXIT_FAILURE


def _prepare_data_dir(config: Any) -> None:
    try:
        Path(config.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise ServerError(
            f"data folder {config.data_dir} cannot be made: {error.strerror or error}"
        ) from None


def _open(config: Any) -> Any:
    from server.database.engine import open_database

    _prepare_data_dir(config)
    return open_database(config.effective_database_url)


def _run(config: Any) -> int:
    from server.access_keys.master_key import load_or_create_master_key_on_disk
    from server.access_keys.store import load_active_key, revocations_state
    from server.codedeploy_api.service_model import load_codedeploy_model
    from server.command_service import SignedSpecifications, load_command_service_model
    from server.host_instances import HostInstances
    from server.request_auth.key_cache import KeyCache
    from server.signer.authority import ensure_signer_on_disk
    from server.signer.signing import load_deployment_signer_from_disk
    from server.web.app import ServerApp
    from server.web.json_protocol import ApiServices
    from server.web.serve import serve_until_stopped

    database = _open(config)
    master = load_or_create_master_key_on_disk(config.master_key_file)
    signer = load_deployment_signer_from_disk(
        ensure_signer_on_disk(config.data_dir, config.signer_name)
    )

    def find_key(access_key_id: str) -> Any:
        with database.read() as connection:
            return load_active_key(connection, master, access_key_id)

    def revocations() -> Any:
        with database.read() as connection:
            return revocations_state(connection)

    services = ApiServices(
        config,
        database,
        load_codedeploy_model(),
        KeyCache(find_key, revocations, config.key_cache_seconds).get,
        load_command_service_model(),
        SignedSpecifications(signer),
        instances=HostInstances(config.key_cache_seconds),
    )
    with ThreadPoolExecutor(config.effective_worker_threads, thread_name_prefix="db") as executor:
        try:
            return serve_until_stopped(config, ServerApp(services, executor), os.environ)
        finally:
            database.dispose()


def _signer(config: Any) -> int:
    from server.signer.authority import ensure_signer_on_disk, signer_common_name_on_disk

    _prepare_data_dir(config)
    files = ensure_signer_on_disk(config.data_dir, config.signer_name)
    document = {"ca_file": str(files.ca_file), "signer_name": signer_common_name_on_disk(files)}
    print(json.dumps(document), flush=True)
    return 0


def _check_config(config: Any) -> int:
    """What ``run`` would start with, checked as far as reading allows: the keys (already
    parsed by now) and the TLS pair. Touches nothing, so an installer can ask before it
    enables the service; the database is not reached (it may not be up yet)."""
    from server.database.engine import describe_database_url
    from server.web.serve import check_tls_files_on_disk

    check_tls_files_on_disk(config)
    document = {
        "config_file": str(config.config_file) if config.config_file else None,
        "listen": str(config.listen),
        "data_dir": str(config.data_dir),
        "database": describe_database_url(config.effective_database_url),
        "tls": config.tls_enabled,
    }
    print(json.dumps(document), flush=True)
    return 0


def _when(epoch: Optional[float]) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _keys(config: Any, arguments: argparse.Namespace) -> int:
    from server.access_keys.identities import key_arn, on_premises_file_text
    from server.access_keys.master_key import load_or_create_master_key_on_disk
    from server.access_keys.store import (
        KeyKind,
        issue_access_key,
        list_access_keys,
        revoke_access_key,
    )

    database = _open(config)
    try:
        if arguments.action in ("create-operator", "create-host"):
            kind = KeyKind.OPERATOR if arguments.action == "create-operator" else KeyKind.HOST
            master = load_or_create_master_key_on_disk(config.master_key_file)
            with database.write() as connection:
                issued = issue_access_key(connection, master, kind, arguments.name, time.time())
            if kind is KeyKind.HOST:
                sys.stdout.write(on_premises_file_text(config, issued))
            else:
                document = {
                    "AccessKeyId": issued.key.access_key_id,
                    "SecretAccessKey": issued.secret_access_key,
                    "Region": config.region,
                }
                print(json.dumps(document))
        elif arguments.action == "revoke":
            with database.write() as connection:
                key = revoke_access_key(connection, arguments.name, time.time())
            print(f"revoked {key.access_key_id} ({key.kind.value} {key.name})")
        else:
            with database.read() as connection:
                keys = list_access_keys(connection)
            if arguments.json:
                print(
                    json.dumps(
                        [
                            {
                                "AccessKeyId": key.access_key_id,
                                "Kind": key.kind.value,
                                "Name": key.name,
                                "Arn": key_arn(config, key),
                                "Created": _when(key.created_at),
                                "Revoked": None
                                if key.revoked_at is None
                                else _when(key.revoked_at),
                            }
                            for key in keys
                        ]
                    )
                )
            for key in [] if arguments.json else keys:
                state = "active" if key.revoked_at is None else f"revoked {_when(key.revoked_at)}"
                print(
                    f"{key.access_key_id}  {key.kind.value:<8}  {key.name}  created {_when(key.created_at)}  {state}"
                )
        sys.stdout.flush()
    finally:
        database.dispose()
    return 0
