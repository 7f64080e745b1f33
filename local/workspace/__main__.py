"""Run the local workspace in the foreground.

    python -m local.workspace --port 8081 --token T --registry-uri URI --data-dir DIR
        [--identity-header H [--identity-client-id ID ...]]

Prints one line with its URL, then serves until SIGTERM or SIGINT. With ``--identity-header``
it runs in identity mode: it also starts the App Service identity stand-in (``local.identity``)
whose ``X-IDENTITY-HEADER`` is ``H``, prints ``IDENTITY_ENDPOINT=<url>`` on a second line, and
accepts only the tokens that stand-in issues (no PAT). An app reaches it with
``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER=H`` (and ``AZURE_CLIENT_ID`` for one of the
``--identity-client-id`` user-assigned identities) instead of ``DATABRICKS_TOKEN``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from local.identity import ManagedIdentityEndpoint

from .server import LocalWorkspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.workspace", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--token", default=os.environ.get("LOCAL_WORKSPACE_TOKEN", "local-token"))
    parser.add_argument(
        "--registry-uri",
        default=os.environ.get("MLFLOW_REGISTRY_URI") or os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow registry the served models come from (default: $MLFLOW_REGISTRY_URI or $MLFLOW_TRACKING_URI)",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".local/workspace"))
    parser.add_argument("--provisioning-seconds", type=float, default=None, help="delay before a config update settles")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws and traffic routing")
    parser.add_argument(
        "--online-store-url",
        default=os.environ.get("LOCAL_ONLINE_STORE_URL"),
        help="database of the online stores and synced tables: sqlite:///path (default <data-dir>/online_store.sqlite)"
        ", postgresql://user@host:port/db (Lakebase) or mysql://... (default: $LOCAL_ONLINE_STORE_URL)",
    )
    parser.add_argument("--identity-header", default=os.environ.get("LOCAL_IDENTITY_HEADER"),
                        help="identity mode: the X-IDENTITY-HEADER of the identity stand-in "
                             "(default: $LOCAL_IDENTITY_HEADER)")
    parser.add_argument("--identity-client-id", action="append", default=[],
                        help="a user-assigned identity's client id the stand-in knows (repeatable)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.registry_uri:
        parser.error("--registry-uri is required (or set MLFLOW_TRACKING_URI)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    identity = None
    if args.identity_header:
        identity = ManagedIdentityEndpoint(header=args.identity_header, client_ids=args.identity_client_id).start()
    ws = LocalWorkspace(
        host=args.host,
        port=args.port,
        token=args.token,
        registry_uri=args.registry_uri,
        data_dir=args.data_dir,
        seed=args.seed,
        online_store_url=args.online_store_url,
        identity=identity,
    )
    if args.provisioning_seconds is not None:
        ws.faults.provisioning_seconds = args.provisioning_seconds
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    ws.start()
    print(ws.url, flush=True)
    if identity is not None:
        print(f"IDENTITY_ENDPOINT={identity.endpoint}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        ws.stop()
        if identity is not None:
            identity.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
