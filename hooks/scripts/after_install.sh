#!/bin/sh
# AfterInstall: stamp the installed files with the deployment that installed them.
set -eu
echo "$DEPLOYMENT_ID" > /tmp/codedeploy-sample/app/RELEASE
echo "installed release $DEPLOYMENT_ID"
