# shellcheck shell=bash
# common.sh — helpers every script of the repository shares, defined once: logging (say/warn/die),
# installing Debian packages when missing, waiting for a URL with a deadline, a free port, and starting and
# stopping processes (pid files; TERM, then KILL after a grace period). Sourced, never run; sets no shell
# options. LOG_NAME (default: the script's file name) prefixes warnings and errors.

LOG_NAME=${LOG_NAME:-${0##*/}}

say() { printf '==> %s\n' "$*"; }
warn() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() {
  warn "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------
# Debian packages

# apt_get ARGS... — apt-get as root (through sudo when we are not), without questions.
apt_get() {
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

# ensure_packages WHAT "COMMAND..." [APT_OPTION...] PACKAGE... — installs the packages with apt-get unless
# every command is already on PATH. The package lists are refreshed once (per run: the children of this
# script inherit SWITCHYARD_APT_UPDATED). Dies when that is impossible or did not help.
ensure_packages() {
  local what=$1 commands=$2 command missing=0 options=() packages=() arg quoted
  shift 2
  for command in $commands; do
    command -v "$command" >/dev/null 2>&1 || missing=1
  done
  ((missing)) || return 0
  for arg in "$@"; do
    if [[ $arg == -* ]]; then options+=("$arg"); else packages+=("'$arg'"); fi
  done
  if ((${#packages[@]} == 1)); then
    quoted="package ${packages[0]}"
  else
    quoted="packages $(printf '%s, ' "${packages[@]:0:${#packages[@]}-1}")"
    quoted="${quoted%, } and ${packages[-1]}"
  fi
  say "$what is not installed: installing the Debian $quoted with apt-get"
  if ((EUID != 0)) && ! command -v sudo >/dev/null 2>&1; then
    die "$what is missing and installing it needs root (or sudo)"
  fi
  packages=()
  for arg in "$@"; do [[ $arg == -* ]] || packages+=("$arg"); done
  if [[ -z ${SWITCHYARD_APT_UPDATED:-} ]]; then
    apt_get update -qq
    export SWITCHYARD_APT_UPDATED=1
  fi
  # Another apt-get may run at the same time (and clean the archive cache under us): wait for its lock, try twice.
  options=(-y -qq -o DPkg::Lock::Timeout=300 "${options[@]}")
  apt_get install "${options[@]}" "${packages[@]}" || apt_get install "${options[@]}" "${packages[@]}"
  for command in $commands; do
    command -v "$command" >/dev/null 2>&1 || die "apt-get finished but $command is still not on PATH"
  done
}

# ---------------------------------------------------------------------------
# Ports and waiting

# free_port — prints a TCP port of 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# process_alive PID|PIDFILE — a number is a pid of ours (kill -0); anything else a pid file (see pid_alive).
process_alive() {
  if [[ $1 =~ ^[0-9]+$ ]]; then kill -0 "$1" 2>/dev/null; else pid_alive "$1"; fi
}

# wait_for URL SECS PID|PIDFILE [CURL_ARG...] — 0 as soon as URL answers 2xx; 1 when the process is gone
# first or SECS pass, with WAIT_FAILURE saying which ("exited before answering URL", "did not answer URL
# within Ns").
# shellcheck disable=SC2034 # WAIT_FAILURE is read by the caller
wait_for() {
  local url=$1 secs=$2 process=$3 deadline
  shift 3
  deadline=$((SECONDS + secs))
  WAIT_FAILURE=
  until curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    if ! process_alive "$process"; then
      WAIT_FAILURE="exited before answering $url"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      WAIT_FAILURE="did not answer $url within ${secs}s"
      return 1
    fi
    sleep 0.1
  done
}

# show_log_tail LOG [LINES] [HEADING] — the last lines of a log on stderr, indented, under a warning.
show_log_tail() {
  local log=$1 lines=${2:-30}
  [[ -f $log ]] || return 0
  warn "${3:-last lines of $log:}"
  tail -n "$lines" "$log" | sed 's/^/    | /' >&2
}

# ---------------------------------------------------------------------------
# Processes: each one started by start_process has <name>.pid and <name>.log in its folder, where <name> is
# the program's file name, so a pid file can be checked to still belong to that program.

STOP_GRACE_SECS=${STOP_GRACE_SECS:-10}

# runs_program PID PROGRAM — the process's command is PROGRAM (its first word, or the second when an
# interpreter runs it as a script).
runs_program() {
  local pid=$1 program=$2 word
  [[ -r /proc/$pid/cmdline ]] || return 1
  while read -r word; do
    [[ ${word##*/} == "$program" ]] && return 0
  done < <(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 2)
  return 1
}

# pid_alive PIDFILE — the pid in the file runs the program the file is named after (a pid may have been
# reused by another program since we wrote the file).
pid_alive() {
  local pidfile=$1 pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  runs_program "$pid" "$(basename "$pidfile" .pid)"
}

# start_process DIR PROGRAM ARGS... — in REPO_ROOT (when set), detached from this terminal (setsid), so
# Ctrl-C in the shell that started it does not take it down; output to DIR/<name>.log, pid in DIR/<name>.pid.
start_process() {
  local dir=$1 program=$2
  shift 2
  local name cmd=("$program")
  name=$(basename "$program")
  # A Python script runs under its interpreter directly, not through env and pyenv's shims: while those run, the
  # command line does not name the script, and pid_alive would take the process for gone.
  if [[ $program == *.py ]]; then cmd=("$(python3 -c 'import sys; print(sys.executable)')" "$program"); fi
  (cd "${REPO_ROOT:-.}" && exec setsid nohup "${cmd[@]}" "$@" >"$dir/$name.log" 2>&1 </dev/null) &
  local pid=$! deadline=$((SECONDS + 5))
  printf '%s\n' "$pid" >"$dir/$name.pid"
  # Until exec completes, the pid still shows the shell, setsid or nohup; wait for it so that from now on
  # pid_alive recognises the process.
  until runs_program "$pid" "$name"; do
    if [[ ! -d /proc/$pid ]] || ((SECONDS >= deadline)); then break; fi
    sleep 0.05
  done
}

# stop_processes SIGNAL PID|PIDFILE... — sends SIGNAL to each live process, waits up to STOP_GRACE_SECS
# for all of them, then KILLs those still alive. Pid files are removed.
stop_processes() {
  local signal=$1 process pid deadline=$((SECONDS + STOP_GRACE_SECS))
  shift
  for process in "$@"; do
    if process_alive "$process"; then
      pid=$process
      [[ $pid =~ ^[0-9]+$ ]] || pid=$(<"$process")
      kill "-$signal" "$pid" 2>/dev/null || true
    fi
  done
  for process in "$@"; do
    while process_alive "$process" && ((SECONDS < deadline)); do sleep 0.1; done
    if process_alive "$process"; then
      pid=$process
      [[ $pid =~ ^[0-9]+$ ]] || pid=$(<"$process")
      warn "pid $pid did not stop within $STOP_GRACE_SECS s: sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    [[ $process =~ ^[0-9]+$ ]] || rm -f "$process"
  done
}
