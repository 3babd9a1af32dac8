#!/bin/sh
# BeforeInstall: prepare the folders the service needs outside the installed files.
set -eu
mkdir -p /tmp/codedeploy-sample/run /tmp/codedeploy-sample/log
echo "preparing $APPLICATION_NAME for deployment $DEPLOYMENT_ID in group $DEPLOYMENT_GROUP_NAME"
