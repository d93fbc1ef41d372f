# Shared by examples/demo.sh and examples/guest_demo.sh (sourced, not run).
# A temporary work directory, background processes stopped at exit, step headings, the simulator.
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi

# start_sim FLEET SCALE: serve FLEET in the background and load its environment (sim.env) here
start_sim() {
  vmctl sim serve --fleet "$1" --env-file "$work/sim.env" --time-scale "$2" >"$work/sim.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do [ -s "$work/sim.env" ] && break; sleep 0.05; done
  [ -s "$work/sim.env" ] || { cat "$work/sim.log"; echo "simulator did not start" >&2; exit 1; }
  cat "$work/sim.log"
  set -a; . "$work/sim.env"; set +a
}
