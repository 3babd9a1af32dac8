#!/bin/sh
# ValidateService: the service must answer with this deployment's release within 20 s.
set -eu
port=${SAMPLE_APP_PORT:-8642}
exec python3 - "$port" "$DEPLOYMENT_ID" <<'PY'
import json, sys, time, urllib.request
port, expected = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 20
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            release = json.load(reply)["release"]
        if release == expected:
            print(f"service answers on port {port} with release {release}")
            sys.exit(0)
        print(f"service answers with release {release}, expected {expected}")
    except OSError as error:
        print(f"service not answering yet: {error}")
    if time.monotonic() > deadline:
        print("service did not become healthy in 20 s", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.3)
PY
