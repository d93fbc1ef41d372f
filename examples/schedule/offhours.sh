#!/usr/bin/env bash
# Off-hours schedule: deallocate a set of VMs in the evening, start them in the morning, and keep
# each run's journal and report. Run it from cron (crontab in this directory) on a machine with a
# managed identity, or from a scheduled CI job (vmctl-offhours.yml here).
#
#   offhours.sh deallocate|start
#
# VMCTL_SELECTION  the VMs, as vmctl selection flags (default: --tag env=dev). Production is never
#                  included: the run has no --include-production.
# VMCTL_RUNS_DIR   where journals and reports are kept (default: ~/.local/state/vmctl/offhours)
# VMCTL_TICKET     change-ticket label for the journal and report (default: offhours-<verb>)
# VMCTL_POST_HOOK  health check after start (default: healthcheck.sh beside this directory)
#
# Exit code: vmctl's (0 all done, 1 failed, 3 partial, 4 refused by a guard, 130/143 interrupted),
# so cron mails and CI marks a failure. An interrupted run: `vmctl resume <journal> --yes`.
set -euo pipefail

verb=${1:?usage: offhours.sh deallocate|start}
case "$verb" in
  deallocate|start) ;;
  *) echo "offhours.sh: '$verb' is not deallocate or start" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
runs=${VMCTL_RUNS_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/vmctl/offhours}
mkdir -p "$runs"
chmod 700 "$runs"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
journal="$runs/$stamp-$verb.jsonl"
report="$runs/$stamp-$verb.md"
read -r -a selection <<< "${VMCTL_SELECTION:---tag env=dev}"

extra=()
if [ "$verb" = start ]; then
  extra=(--post-hook "${VMCTL_POST_HOOK:-$here/../healthcheck.sh}")
fi

echo "offhours.sh: vmctl $verb ${selection[*]}; journal $journal"
vmctl "$verb" "${selection[@]}" --yes --ticket "${VMCTL_TICKET:-offhours-$verb}" \
  --journal "$journal" --report "$report" "${extra[@]}"
