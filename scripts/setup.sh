#!/usr/bin/env bash
# Make sure the system packages RoomPulse's build and tests need are present:
# python3 with venv (python3-venv on Debian/Raspberry Pi OS) and, with --broker, mosquitto
# (with mosquitto_passwd) and openssl for the broker tests, chromium and chromium-driver for the
# dashboard's browser test.
# Installs through apt-get only what is missing; uses sudo when not root.
set -euo pipefail

need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "${1:-}" = "--broker" ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)  # ships mosquitto_passwd
  command -v openssl >/dev/null 2>&1 || need+=(openssl)  # throwaway CA in the TLS tests
  command -v chromium >/dev/null 2>&1 || need+=(chromium)  # the dashboard page in a real browser
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${need[*]} with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
