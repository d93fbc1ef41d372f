#!/usr/bin/env bash
# Sample --post-hook: check a VM is healthy after vmctl starts or restarts it.
#
#   vmctl start --tag env=dev --post-hook ./examples/healthcheck.sh \
#       --hook-env HEALTH_URL_TEMPLATE --yes
#
# vmctl runs it once per VM after Azure reports the VM running, with VMCTL_VM_NAME,
# VMCTL_RESOURCE_GROUP, VMCTL_SUBSCRIPTION, VMCTL_VM_ID, VMCTL_ACTION and VMCTL_HOOK_PHASE set.
# Exit 0 = healthy; anything else (or --hook-timeout) marks the VM failed, and in
# `vmctl maintenance start` stops the next wave.
#
# HEALTH_URL_TEMPLATE (pass it with --hook-env): the VM's health endpoint, {name} and {group}
#   filled in, e.g. https://{name}.internal.contoso.com/healthz. Healthy = an HTTP 2xx.
#   Unset: the sample only logs that "running" is all it knows, and exits 0.
# HEALTH_TIMEOUT: seconds to keep trying (default 240: a booting VM needs a minute or more).
# HEALTH_CURL_OPTS: extra curl options (e.g. "--cacert /path/ca.pem").
set -euo pipefail

name=${VMCTL_VM_NAME:?healthcheck.sh is a vmctl hook: VMCTL_VM_NAME is not set}
group=${VMCTL_RESOURCE_GROUP:-}
template=${HEALTH_URL_TEMPLATE:-}
timeout=${HEALTH_TIMEOUT:-240}

if [ -z "$template" ]; then
  echo "healthcheck.sh: $group/$name: HEALTH_URL_TEMPLATE is not set; Azure reports it running, nothing more checked (sample mode)"
  exit 0
fi

url=${template//\{name\}/$name}
url=${url//\{group\}/$group}
deadline=$((SECONDS + timeout))
while :; do
  # shellcheck disable=SC2086  # HEALTH_CURL_OPTS is a list of options
  code=$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 10 ${HEALTH_CURL_OPTS:-} "$url" || true)
  case "$code" in
    2??) echo "healthcheck.sh: $group/$name: healthy ($url answered $code)"; exit 0 ;;
  esac
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "healthcheck.sh: $group/$name: not healthy after ${timeout}s (last answer: ${code:-none})" >&2
    exit 1
  fi
  sleep 3
done
