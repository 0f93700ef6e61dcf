#!/usr/bin/env bash
# Install RoomPulse as a systemd service on Raspberry Pi OS (Bookworm or Trixie).
#
#   sudo scripts/install-pi.sh                      install or update (safe to run again)
#   sudo scripts/install-pi.sh --device-id room-101  ... and name the unit in a new env file
#   scripts/install-pi.sh --dry-run                 print every step, change nothing (no root needed)
#
# What it does, in order:
#   1. apt packages: python3-venv, python3-picamera2 (the Pi camera, from Raspberry Pi OS's
#      archive), mosquitto-clients (mosquitto_sub to watch the output);
#   2. a system user "roompulse" in the video group (camera, DMA heaps), and in the groups
#      Coral's udev rules give the Edge TPU to (apex, plugdev) where they exist;
#   3. copies this checkout to /opt/roompulse/src and makes /opt/roompulse/venv with
#      --system-site-packages (picamera2 and libcamera come from apt, not PyPI), then
#      installs RoomPulse into it (editable: the models live in src/models), keeping apt's
#      numpy (picamera2's compiled parts are built for it); when pyproject.toml is unchanged
#      and the venv already has RoomPulse, pip is skipped, so an update works offline;
#   4. the models come with the checkout; step 7 checks them (sha256, self-test);
#   5. /etc/roompulse/roompulse.env from the example (never overwrites an existing one),
#      with ROOMPULSE_DEVICE_ID set when --device-id is given; /var/lib/roompulse;
#   6. installs systemd/roompulse.service and enables it;
#   7. runs 'roompulse doctor' as the service user and starts the service only when the env
#      file differs from the example by more than the --device-id line (it was edited) and
#      the doctor passes; otherwise it says what to do and how to start it later. A service
#      that was running before the update is started again whatever the doctor says (it
#      rides out a broker outage by itself; a broken setting stops it with exit code 78).
set -euo pipefail

PREFIX=/opt/roompulse
CONF_DIR=/etc/roompulse
UNIT_DIR=/etc/systemd/system
SERVICE_USER=roompulse
APT_PACKAGES=(python3-venv python3-picamera2 mosquitto-clients)
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

DRY_RUN=0
DEVICE_ID=
usage() {
  sed -n '2,23s/^# \{0,1\}//p' "$0"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run | -n) DRY_RUN=1 ;;
    --device-id)
      if [ -z "${2:-}" ]; then echo "install-pi.sh: --device-id needs a NAME, e.g. --device-id room-101" >&2; exit 2; fi
      DEVICE_ID=$2; shift ;;
    --device-id=*)
      DEVICE_ID=${1#--device-id=}
      if [ -z "$DEVICE_ID" ]; then echo "install-pi.sh: --device-id needs a NAME, e.g. --device-id=room-101" >&2; exit 2; fi ;;
    --help | -h) usage; exit 0 ;;
    *) echo "install-pi.sh: unknown option '$1' (use --dry-run, --device-id NAME or --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$DEVICE_ID" ] && ! [[ "$DEVICE_ID" =~ ^[A-Za-z0-9_-]{1,64}$ ]]; then
  suggestion=$(printf '%s' "$DEVICE_ID" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9_-]+/-/g; s/^-+//; s/-+$//')
  echo "install-pi.sh: '$DEVICE_ID' is not a unit name (letters, digits, - and _); use '$suggestion'" >&2
  exit 2
fi

step() { printf '\n== %s\n' "$*"; }
# still_example FILE: FILE is the example env file but for the ROOMPULSE_DEVICE_ID line that
# --device-id writes, i.e. nobody has edited it yet.
still_example() {
  cmp -s <(grep -v '^#\{0,1\}ROOMPULSE_DEVICE_ID=' "$SRC_DIR/systemd/roompulse.env.example") \
    <(grep -v '^#\{0,1\}ROOMPULSE_DEVICE_ID=' "$1")
}
# run CMD...: print the command; execute it unless --dry-run.
run() {
  printf '+ %s\n' "$*"
  if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}
note() { printf '  %s\n' "$*"; }

if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-pi.sh: run as root (sudo scripts/install-pi.sh), or with --dry-run to see the plan" >&2
  exit 1
fi
if [ ! -f "$SRC_DIR/pyproject.toml" ] || [ ! -f "$SRC_DIR/systemd/roompulse.service" ]; then
  echo "install-pi.sh: $SRC_DIR is not a RoomPulse checkout (no pyproject.toml / systemd/roompulse.service)" >&2
  exit 1
fi

codename=unknown
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
fi
[ "$DRY_RUN" -eq 1 ] && echo "install-pi.sh: dry run: nothing is changed"
echo "install-pi.sh: installing $SRC_DIR to $PREFIX on $codename"
case "$codename" in
  bookworm | trixie) ;;
  *) echo "install-pi.sh: warning: tested on Raspberry Pi OS bookworm and trixie, this is '$codename'" >&2 ;;
esac

step "1. apt packages: ${APT_PACKAGES[*]}"
missing=()
skipped=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
  if [ "$pkg" = python3-picamera2 ] && ! apt-cache show "$pkg" >/dev/null 2>&1; then
    note "$pkg is not in this system's apt sources (not Raspberry Pi OS?): skipped;"
    note "USB, RTSP/HTTP and file sources still work, ROOMPULSE_SOURCE=picamera2 will not"
    skipped+=("$pkg")
    continue
  fi
  missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ] && [ ${#skipped[@]} -eq 0 ]; then
  note "all installed"
elif [ ${#missing[@]} -eq 0 ]; then
  note "nothing to install; NOT installed: ${skipped[*]}"
else
  [ ${#skipped[@]} -eq 0 ] || note "NOT installed: ${skipped[*]}"
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

step "2. service user '$SERVICE_USER' in group video"
if getent passwd "$SERVICE_USER" >/dev/null; then
  note "user exists"
else
  run useradd --system --user-group --home-dir /var/lib/roompulse --no-create-home \
    --shell /usr/sbin/nologin "$SERVICE_USER"
fi
for group in video apex plugdev; do
  if [ "$group" != video ] && ! getent group "$group" >/dev/null; then
    continue  # the Edge TPU's groups exist once Coral's packages are installed
  fi
  if id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
    note "already in $group"
  else
    run usermod --append --groups "$group" "$SERVICE_USER"
  fi
done

step "3. source in $PREFIX/src, venv in $PREFIX/venv (--system-site-packages)"
run install -d -m 0755 "$PREFIX" "$PREFIX/src"
# .venv* also covers the build and fallback-runtime venvs that 'make models' / 'make test' make.
EXCLUDES=(--exclude=.git --exclude='.venv*' --exclude=.state --exclude=__pycache__ --exclude='*.egg-info')
# pip is needed only for a new venv or changed dependencies; compared before the copy.
need_pip=1
if [ -x "$PREFIX/venv/bin/python" ] && cmp -s "$SRC_DIR/pyproject.toml" "$PREFIX/src/pyproject.toml" \
  && "$PREFIX/venv/bin/python" -c "import device" 2>/dev/null; then
  need_pip=0
fi
printf '+ tar -C %s %s -cf - . | tar -C %s --no-same-owner -xf -\n' "$SRC_DIR" "${EXCLUDES[*]}" "$PREFIX/src"
if [ "$DRY_RUN" -eq 0 ]; then
  tar -C "$SRC_DIR" "${EXCLUDES[@]}" -cf - . | tar -C "$PREFIX/src" --no-same-owner -xf -
fi
if [ -x "$PREFIX/venv/bin/python" ]; then
  note "venv exists"
else
  run python3 -m venv --system-site-packages "$PREFIX/venv"
fi
# apt's picamera2 and simplejpeg are compiled for apt's numpy; a newer numpy from PyPI in
# the venv makes 'import picamera2' fail ("numpy.dtype size changed"): pin it to apt's.
CONSTRAINTS=()
apt_numpy=$(/usr/bin/python3 -c "import numpy; print(numpy.__version__)" 2>/dev/null || true)
if [ -n "$apt_numpy" ]; then
  note "numpy kept at apt's $apt_numpy"
  CONSTRAINTS=(--constraint "$PREFIX/numpy-constraint.txt")
  [ "$DRY_RUN" -eq 1 ] || echo "numpy==$apt_numpy" >"$PREFIX/numpy-constraint.txt"
fi
if [ "$need_pip" -eq 1 ]; then
  run "$PREFIX/venv/bin/python" -m pip install --quiet --upgrade pip
  run "$PREFIX/venv/bin/python" -m pip install --quiet "${CONSTRAINTS[@]}" --editable "$PREFIX/src"
else
  note "pyproject.toml unchanged and RoomPulse in the venv: pip not needed (the install is editable)"
fi
# The service cannot write bytecode (ProtectSystem=strict): compile it once here.
run "$PREFIX/venv/bin/python" -m compileall -q "$PREFIX/src/device"

step "4. models"
note "committed in the checkout (models/manifest.json); step 7 checks their sha256 and self-test"

step "5. settings in $CONF_DIR (root:$SERVICE_USER, 0640)"
run install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
run install -m 0640 -o root -g "$SERVICE_USER" "$SRC_DIR/systemd/roompulse.env.example" \
  "$CONF_DIR/roompulse.env.example"
if [ -e "$CONF_DIR/roompulse.env" ]; then
  note "$CONF_DIR/roompulse.env exists: kept as it is"
else
  run install -m 0640 -o root -g "$SERVICE_USER" "$SRC_DIR/systemd/roompulse.env.example" \
    "$CONF_DIR/roompulse.env"
  if [ -n "$DEVICE_ID" ]; then
    run sed -i "s/^#ROOMPULSE_DEVICE_ID=.*/ROOMPULSE_DEVICE_ID=$DEVICE_ID/" "$CONF_DIR/roompulse.env"
  fi
fi
# systemd's StateDirectory= makes it at the first start; the doctor needs it before that.
run install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" /var/lib/roompulse

step "6. systemd unit"
run install -m 0644 "$SRC_DIR/systemd/roompulse.service" "$UNIT_DIR/roompulse.service"
run systemctl daemon-reload
run systemctl enable roompulse.service

step "7. roompulse doctor (as $SERVICE_USER), then start"
DOCTOR=(runuser -u "$SERVICE_USER" -- "$PREFIX/venv/bin/roompulse" --env-file "$CONF_DIR/roompulse.env" doctor)
START_LATER="sudo ${DOCTOR[*]} && sudo systemctl restart roompulse"
if [ "$DRY_RUN" -eq 1 ]; then
  printf '+ systemctl stop roompulse.service   (when running: the doctor opens the camera)\n'
  printf '+ %s\n' "${DOCTOR[*]}"
  note "the service is started only when $CONF_DIR/roompulse.env was edited and the doctor passes"
else
  was_active=0
  if systemctl is-active --quiet roompulse.service; then
    was_active=1
    run systemctl stop roompulse.service
  fi
  doctor_ok=0
  run "${DOCTOR[@]}" && doctor_ok=1
  if [ "$was_active" -eq 1 ]; then
    [ "$doctor_ok" -eq 1 ] || note "the doctor found FAIL lines above; the service ran before the update, so it runs again"
    run systemctl restart roompulse.service
  elif still_example "$CONF_DIR/roompulse.env"; then
    note "NOT started: $CONF_DIR/roompulse.env is still the example; edit it (ROOMPULSE_MQTT_HOST,"
    note "ROOMPULSE_DEVICE_ID, ROOMPULSE_SOURCE), then start the service with:"
    note "  $START_LATER"
  elif [ "$doctor_ok" -eq 0 ]; then
    note "NOT started: the doctor found FAIL lines above; fix them, then start the service with:"
    note "  $START_LATER"
  else
    run systemctl restart roompulse.service
  fi
fi

step "done"
note "aim the camera:  sudo systemctl stop roompulse && sudo -u $SERVICE_USER $PREFIX/venv/bin/roompulse \\"
note "                   --env-file $CONF_DIR/roompulse.env aim      # Ctrl-C ends it; then start the service"
note "after editing $CONF_DIR/roompulse.env:"
note "  $START_LATER"
note "  journalctl -u roompulse -f          # logs"
note "  systemctl status roompulse          # state, watchdog"
note "  mosquitto_sub -h BROKER -t 'roompulse/#' -v"
