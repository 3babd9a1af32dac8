#!/bin/sh
# ApplicationStop: runs from the previously installed revision; stops its server if it runs.
set -eu
pidfile=/tmp/codedeploy-sample/run/server.pid
if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        echo "stopped server $pid ($DEPLOYMENT_ID stops the previous revision)"
    fi
    rm -f "$pidfile"
else
    echo "no server running"
fi
