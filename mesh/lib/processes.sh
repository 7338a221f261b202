# shellcheck shell=bash
# processes.sh — the mesh's processes as a whole: waiting for one to answer (or giving up with its log),
# every pid file of the run folder in stop order, stopping them all, and the mesh's state (up, down,
# partial). Every process has <program>.pid and <program>.log in its folder (start_process in
# mesh/lib/common.sh). Sourced by mesh/mesh.sh.

# wait_http URL WHAT PIDFILE — until URL answers 2xx; dies (with the log's tail) when the process exits
# first or WAIT_SECS pass.
wait_http() {
  local url=$1 what=$2 pidfile=$3
  if ! wait_for "$url" "$WAIT_SECS" "$pidfile"; then
    show_log_tail "${pidfile%.pid}.log"
    die "$what $WAIT_FAILURE"
  fi
  printf '    %-34s answers %s\n' "$what" "$url"
}

# Every pid file of this RUN_DIR, front to back (HAProxy, forex-web, …), so that `down`
# stops the callers before the services they call.
our_pidfiles() {
  [[ -d $RUN_DIR ]] || return 0
  local pidfile rank
  find "$RUN_DIR" -mindepth 2 -maxdepth 2 -name '*.pid' | while read -r pidfile; do
    case $pidfile in
      "$HAPROXY_DIR"/*) rank=0 ;;
      "$RUN_DIR"/forex-web-*) rank=1 ;;
      "$RUN_DIR"/forex-converter-*) rank=2 ;;
      *) rank=3 ;;
    esac
    printf '%s %s\n' "$rank" "$pidfile"
  done | sort | cut -d ' ' -f 2-
}

# Stops every process we have a pid file for: TERM, up to 10 s to drain, then KILL.
stop_all() {
  local pidfile alive=()
  while read -r pidfile; do
    [[ -n $pidfile ]] || continue
    if pid_alive "$pidfile"; then
      say "stopping $(basename "$pidfile" .pid) of $(basename "$(dirname "$pidfile")") (pid $(<"$pidfile"))"
      alive+=("$pidfile")
    fi
  done < <(our_pidfiles)
  stop_processes TERM "${alive[@]}"
  our_pidfiles | while read -r pidfile; do [[ -z $pidfile ]] || rm -f "$pidfile"; done
}

# Prints "up", "down" or "partial" from the pid files of this RUN_DIR.
mesh_state() {
  local pidfile total=0 running=0
  while read -r pidfile; do
    [[ -n $pidfile ]] || continue
    total=$((total + 1))
    if pid_alive "$pidfile"; then running=$((running + 1)); fi
  done < <(our_pidfiles)
  if ((running == 0)); then
    echo down
  elif ((running == total)); then
    echo up
  else
    echo partial
  fi
}

# process_state PIDFILE — prints "running (pid N)" or "stopped".
process_state() {
  if pid_alive "$1"; then echo "running (pid $(<"$1"))"; else echo stopped; fi
}

# probe URL — prints "answers" or "no answer".
probe() {
  if curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; then echo answers; else echo "no answer"; fi
}
