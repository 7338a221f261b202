#!/usr/bin/env bash
# check-shell.sh — the shell step of `make check`: `bash -n` and `shellcheck -x` on every shell script of
# the repository (tracked or new but not ignored: *.sh, and files whose first line runs bash or sh or that
# declare `# shellcheck shell=`), run from the repository root so that `# shellcheck source=` paths resolve.
# Needs shellcheck (Debian's package; `mesh/mesh.sh install-shellcheck` installs it). Exit status 1 when a
# script has a finding.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=mesh/lib/common.sh
source mesh/lib/common.sh

command -v shellcheck >/dev/null 2>&1 || die "shellcheck is missing: run 'mesh/mesh.sh install-shellcheck'"

# Every candidate file, relative to the repository root.
candidates() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard
  else
    find . -path ./.git -prune -o -path ./target -prune -o -path ./run -prune -o -type f -print | sed 's|^\./||'
  fi
}

shell_scripts() {
  local file
  while read -r file; do
    [[ -f $file ]] || continue
    if [[ $file == *.sh ]] || head -n 1 "$file" | grep -Eq '^#!.*[/ ](ba)?sh( |$)' ||
      head -n 3 "$file" | grep -Eq '^# shellcheck shell=(ba)?sh'; then
      printf '%s\n' "$file"
    fi
  done < <(candidates) | sort -u
}

mapfile -t scripts < <(shell_scripts)
((${#scripts[@]} > 0)) || die "found no shell scripts (run from a checkout of the repository)"
say "bash -n and shellcheck -x on ${#scripts[@]} shell scripts"
status=0
for script in "${scripts[@]}"; do
  bash -n "$script" || status=1
done
shellcheck -x "${scripts[@]}" || status=1
if ((status == 0)); then say "every shell script is clean"; fi
exit "$status"
