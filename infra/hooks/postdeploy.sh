#!/bin/sh
# azd postdeploy hook: after the first code deployment the functions exist, so provision once more
# with the Event Grid event subscriptions (Event Grid refuses an AzureFunction endpoint before that).
set -eu
if [ "${DEPLOY_EVENT_SUBSCRIPTIONS:-false}" = "true" ]; then
  exit 0
fi
echo "Functions deployed: creating the Event Grid event subscriptions (azd provision)."
azd env set DEPLOY_EVENT_SUBSCRIPTIONS true
azd provision --no-prompt
