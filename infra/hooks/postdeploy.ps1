# azd postdeploy hook: after the first code deployment the functions exist, so provision once more
# with the Event Grid event subscriptions (Event Grid refuses an AzureFunction endpoint before that).
$ErrorActionPreference = 'Stop'
if ($env:DEPLOY_EVENT_SUBSCRIPTIONS -eq 'true') { exit 0 }
Write-Host 'Functions deployed: creating the Event Grid event subscriptions (azd provision).'
azd env set DEPLOY_EVENT_SUBSCRIPTIONS true
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
azd provision --no-prompt
exit $LASTEXITCODE
