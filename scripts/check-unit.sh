#!/usr/bin/env bash
# Check systemd/roompulse.service: `systemd-analyze verify` and the offline security score.
#
# verify needs ExecStart's binary and the standard units to exist, so it runs against a
# scratch root: this machine's /usr/lib/systemd/system plus a stub /opt/roompulse/venv/bin/roompulse.
# Prints "verify: ok" and "security: <score>"; exits 1 when verify fails or the score is
# above MAX_EXPOSURE (default 2.0). Needs systemd-analyze (apt install systemd).
set -euo pipefail

MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
UNIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/systemd/roompulse.service
command -v systemd-analyze >/dev/null || { echo "check-unit: systemd-analyze not found (apt install systemd)" >&2; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/opt/roompulse/venv/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
printf '#!/bin/sh\n' >"$root/opt/roompulse/venv/bin/roompulse"
chmod +x "$root/opt/roompulse/venv/bin/roompulse"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$UNIT" "$root/etc/systemd/system/roompulse.service"

systemd-analyze verify --root="$root" /etc/systemd/system/roompulse.service
echo "verify: ok"
score=$(systemd-analyze security --offline=true --no-pager "$UNIT" | sed -n 's/.*Overall exposure level for roompulse.service: \([0-9.]*\).*/\1/p')
echo "security: $score"
awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s != "" && s <= m) }' || {
  echo "check-unit: exposure $score is above $MAX_EXPOSURE" >&2
  exit 1
}
