"""The ``roompulse`` command: ``run``, ``aim``, ``doctor``, ``analyze``, ``check-config``, ``privacy-report``.

Exit codes: 0 success; 1 a runtime failure (model, source, state) with a one-line
message; 2 bad command-line usage; 78 invalid configuration (EX_CONFIG), including a
source that cannot work on this system (picamera2 selected but not installed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from device import __version__
from device.config import (
    EX_CONFIG,
    SMALL_GROUP_FLOOR,
    ConfigError,
    Settings,
    env_file_in_force,
    load_settings,
    unknown_variables,
)
from device.envfile import problems as env_file_problems
from device.logs import configure as configure_logging
from device.models import ModelError
from device.runtime import AcceleratorUnavailable, RuntimeUnavailable
from device.sources import SourceError, SourceUnavailable, preflight
from device.state import StateError

log = logging.getLogger("roompulse")


# (name, one-line description, example) of every subcommand, for --help.
COMMANDS = {
    "run": ("the service: camera -> counts per window -> MQTT (or stdout)", "roompulse run --source /dev/video0"),
    "aim": ("live terminal view for aiming the camera: faces, where, how wide, advice; nothing is stored",
            "roompulse aim --source rtsp://camera/stream"),
    "doctor": ("check every precondition (model, camera, state, broker, clock), one line each; exit 0 when all pass",
               "roompulse --env-file /etc/roompulse/roompulse.env doctor"),
    "check-config": ("validate the settings and print them, secrets masked", "roompulse check-config"),
    "analyze": ("detect faces in image or video files, one JSON line per frame; publishes nothing",
                "roompulse analyze classroom.mp4"),
    "privacy-report": ("what leaves the device, what is stored, what is never collected",
                       "roompulse privacy-report"),
    "dashboard": ("serve the multi-room dashboard (a separate subscriber process, not on the unit)",
                  "roompulse dashboard --listen 127.0.0.1:8080"),
}


def _epilog() -> str:
    lines = ["commands:"]
    for name, (text, example) in COMMANDS.items():
        lines += [f"  {name:<15} {text}", f"  {'':<15}   e.g. {example}"]
    lines += ["", "Global options (--env-file) may come before or after the command;",
              "'roompulse COMMAND --help' describes each command.",
              "Exit codes: 0 success, 1 runtime failure, 2 usage, 78 invalid configuration."]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roompulse", description="RoomPulse classroom sensor: counts faces and head orientation, "
        "publishes group numbers over MQTT.", epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"roompulse {__version__}")
    env_help = "ROOMPULSE_* settings file (default /etc/roompulse/roompulse.env when it exists)"
    parser.add_argument("--env-file", type=Path, default=None, help=env_help)
    # The same option on every subcommand, so it also works after the command name; SUPPRESS
    # keeps a value given before the command when none is given after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", type=Path, default=argparse.SUPPRESS, help=env_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of the commands below")

    def add(name: str) -> argparse.ArgumentParser:
        text, example = COMMANDS[name]
        return sub.add_parser(name, parents=[common], description=f"{text}.",
                              epilog=f"example: {example}", formatter_class=argparse.RawDescriptionHelpFormatter)

    run = add("run")
    run.add_argument("--source", help="overrides ROOMPULSE_SOURCE")
    aim = add("aim")
    aim.add_argument("--source", help="overrides ROOMPULSE_SOURCE")
    aim.add_argument("--json", action="store_true", help="one JSON object per refresh instead of the text view")
    doctor = add("doctor")
    doctor.add_argument("--source", help="overrides ROOMPULSE_SOURCE")
    analyze = add("analyze")
    analyze.add_argument("paths", nargs="+", type=Path)
    add("check-config")
    add("privacy-report")
    dashboard = add("dashboard")
    dashboard.add_argument("--listen", metavar="HOST:PORT",
                           help="overrides ROOMPULSE_DASHBOARD_LISTEN (default 127.0.0.1:8080)")
    return parser


def _face_json(face) -> dict:
    d = face.detection
    return {
        "box": [round(float(v), 1) for v in d.box],
        "score": round(d.score, 3),
        "yaw_deg": round(face.pose.yaw_deg, 1),
        "pitch_deg": round(face.pose.pitch_deg, 1),
        "facing_front": face.facing_front,
    }


def cmd_analyze(settings: Settings, paths: list[Path]) -> int:
    """One JSON line per image or video frame; errors per path on stderr."""
    from device.sources.files import read_file  # PyAV: loaded only for files (the Pi camera path never needs it)
    from device.pipeline import build_analyzer

    analyzer = build_analyzer(settings)
    failed = 0
    for path in paths:
        try:
            for frame in read_file(path):
                faces = analyzer.faces(frame.rgb)
                line = {"source": str(path), "frame": frame.index, "width": frame.width,
                        "height": frame.height, "faces": [_face_json(f) for f in faces]}
                print(json.dumps(line), flush=True)
        except SourceError as exc:
            print(f"roompulse analyze: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_run(settings: Settings) -> int:
    from device.pipeline import build_analyzer
    from device.publisher import Publisher
    from device.service import Service
    from device.state import StateStore, lock_state_dir

    preflight(settings.source)
    if settings.topic_prefix and settings.prefix.rsplit("/", 1)[-1] != settings.device_id:
        log.warning("ROOMPULSE_TOPIC_PREFIX=%s does not end with the device id %s: roompulse dashboard takes a "
                    "unit's windows only from <root>/<device_id>/engagement, so it will refuse these",
                    settings.prefix, settings.device_id)
    state = StateStore(settings.state_dir)
    lock = lock_state_dir(settings.state_dir)
    try:
        analyzer = build_analyzer(settings)
        service = Service(settings, analyzer, Publisher(settings), state)
        service.install_signal_handlers()
        try:
            return service.run()
        finally:
            state.close()
    finally:
        lock.close()


def cmd_check_config(settings: Settings, env_file: Path | None = None) -> int:
    """Print the settings in force, one ``VARIABLE=value`` line each, secrets masked; values
    derived from others (port, client id, topic prefix) are shown as they apply. The env
    file read goes to stderr, so stdout stays ``VARIABLE=value`` lines."""
    print(f"roompulse: settings from {env_file or 'the environment and defaults (no env file)'}", file=sys.stderr)
    shown = settings.masked()
    shown.update({"ROOMPULSE_MQTT_PORT": str(settings.port), "ROOMPULSE_MQTT_CLIENT_ID": settings.client_id,
                  "ROOMPULSE_TOPIC_PREFIX": settings.prefix})
    for name, value in shown.items():
        print(f"{name}={value}")
    return 0


def cmd_dashboard(env_file: Path | None, listen: str | None) -> int:
    """``roompulse dashboard``: its own settings (device/dashboard/settings.py), not the unit's."""
    from device.dashboard import run
    from device.dashboard.store import StoreError

    configure_logging("INFO")
    try:
        return run(env_file, listen)
    except ConfigError as exc:
        print(f"roompulse dashboard: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (StoreError, RuntimeError) as exc:
        print(f"roompulse dashboard: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dashboard":
        return cmd_dashboard(args.env_file, args.listen)
    overrides = {"source": args.source} if getattr(args, "source", None) else {}
    if args.command == "doctor":  # reports an invalid configuration as one of its lines
        from device.doctor import run_doctor

        configure_logging("INFO")
        return run_doctor(args.env_file, sys.stdout, overrides)
    try:
        settings = load_settings(args.env_file, **overrides)
    except ConfigError as exc:
        print(f"roompulse: {exc}", file=sys.stderr)
        return EX_CONFIG
    configure_logging(settings.log_level)
    env_file = env_file_in_force(args.env_file)
    if env_file:
        for problem in env_file_problems(env_file):
            log.warning("%s", problem)
    for name in unknown_variables(env_file):
        log.warning("%s is not a RoomPulse setting and is ignored", name)
    if settings.min_group_size < SMALL_GROUP_FLOOR:
        log.warning("ROOMPULSE_ALLOW_SMALL_GROUPS override: scores are published for groups of %d face(s), "
                    "below the privacy floor of %d", settings.min_group_size, SMALL_GROUP_FLOOR)
    try:
        if args.command == "analyze":
            return cmd_analyze(settings, args.paths)
        if args.command == "check-config":
            return cmd_check_config(settings, env_file)
        if args.command == "aim":
            from device.aim import run_aim

            return run_aim(settings, as_lines=args.json)
        if args.command == "privacy-report":
            from device.privacy import report

            print(report(settings), end="")
            return 0
        return cmd_run(settings)
    except AcceleratorUnavailable as exc:  # exit 1: attaching the Edge TPU and restarting can fix it
        print(f"roompulse: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, SourceUnavailable, RuntimeUnavailable) as exc:  # a restart cannot fix these
        print(f"roompulse: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (ModelError, SourceError, StateError, ValueError) as exc:
        print(f"roompulse: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before aim's loop (model loading, opening the camera)
        return 130
