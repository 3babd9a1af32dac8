#!/bin/sh
# ApplicationStart: start the service in the background. Its output goes to a log file, so
# it does not hold the hook's stdout open after this script exits.
set -eu
cd /tmp/codedeploy-sample/app
nohup ./server.py >>/tmp/codedeploy-sample/log/server.log 2>&1 &
echo $! > /tmp/codedeploy-sample/run/server.pid
echo "started server $! on port ${SAMPLE_APP_PORT:-8642}"
