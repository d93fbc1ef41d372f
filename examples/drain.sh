#!/usr/bin/env bash
# Sample --pre-hook: drain a VM before vmctl stops, deallocates, restarts or maintains it.
#
#   vmctl deallocate --tag env=dev --pre-hook ./examples/drain.sh \
#       --hook-env DRAIN_URL_TEMPLATE --yes
#
# vmctl runs it once per VM with VMCTL_VM_NAME, VMCTL_RESOURCE_GROUP, VMCTL_SUBSCRIPTION,
# VMCTL_VM_ID, VMCTL_ACTION and VMCTL_HOOK_PHASE set. Exit 0 = drained, go ahead; anything else
# (or --hook-timeout, default 300 s) = vmctl skips this VM (outcome `pre-hook-failed`).
#
# DRAIN_URL_TEMPLATE (pass it with --hook-env): the VM's drain endpoint, {name} and {group}
#   filled in, e.g. https://{name}.internal.contoso.com/admin/drain. The script POSTs to it, then
#   GETs it until the body says "drained" (your app's contract; adapt the two curl lines).
#   Unset: the sample only logs that there is nothing to drain, and exits 0.
# DRAIN_TIMEOUT: seconds to wait for "drained" (default 240: inside vmctl's 300 s hook timeout).
# DRAIN_CURL_OPTS: extra curl options (e.g. "--cacert /path/ca.pem").
set -euo pipefail

name=${VMCTL_VM_NAME:?drain.sh is a vmctl hook: VMCTL_VM_NAME is not set}
group=${VMCTL_RESOURCE_GROUP:-}
template=${DRAIN_URL_TEMPLATE:-}
timeout=${DRAIN_TIMEOUT:-240}

if [ -z "$template" ]; then
  echo "drain.sh: $group/$name: DRAIN_URL_TEMPLATE is not set; nothing to drain (sample mode)"
  exit 0
fi

url=${template//\{name\}/$name}
url=${url//\{group\}/$group}
# shellcheck disable=SC2086  # DRAIN_CURL_OPTS is a list of options
curl_() { curl --silent --show-error --fail --max-time 10 ${DRAIN_CURL_OPTS:-} "$@"; }

echo "drain.sh: $group/$name: asking $url to drain (before ${VMCTL_ACTION:-the action})"
curl_ -X POST "$url" >/dev/null
deadline=$((SECONDS + timeout))
while :; do
  state=$(curl_ "$url" || echo "unreachable")
  case "$state" in
    *drained*) echo "drain.sh: $group/$name: drained"; exit 0 ;;
  esac
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "drain.sh: $group/$name: not drained after ${timeout}s (last answer: $state)" >&2
    exit 1
  fi
  sleep 2
done
