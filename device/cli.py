"""The ``roompulse`` command: ``run``, ``analyze``, ``check-config``.

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
    DEFAULT_ENV_FILE,
    EX_CONFIG,
    SMALL_GROUP_FLOOR,
    ConfigError,
    Settings,
    load_settings,
    unknown_variables,
)
from device.envfile import problems as env_file_problems
from device.logs import configure as configure_logging
from device.models import ModelError
from device.runtime import RuntimeUnavailable
from device.sources import SourceError, SourceUnavailable, preflight
from device.sources.files import read_file
from device.state import StateError

log = logging.getLogger("roompulse")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roompulse", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"roompulse {__version__}")
    parser.add_argument("--env-file", type=Path, default=None,
                        help="ROOMPULSE_* settings file (default /etc/roompulse/roompulse.env when it exists)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service: source -> aggregates -> MQTT/stdout")
    run.add_argument("--source", help="overrides ROOMPULSE_SOURCE")
    analyze = sub.add_parser("analyze", help="detect faces in image/video files; JSON lines on stdout, publishes nothing")
    analyze.add_argument("paths", nargs="+", type=Path)
    sub.add_parser("check-config", help="validate the configuration and print it with secrets masked")
    sub.add_parser("privacy-report", help="print what leaves the device, what is stored, what is never collected")
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
    from device.state import StateStore

    preflight(settings.source)
    state = StateStore(settings.state_dir)
    analyzer = build_analyzer(settings)
    service = Service(settings, analyzer, Publisher(settings), state)
    service.install_signal_handlers()
    try:
        return service.run()
    finally:
        state.close()


def cmd_check_config(settings: Settings) -> int:
    for name, value in settings.masked().items():
        print(f"{name}={value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {"source": args.source} if getattr(args, "source", None) else {}
    try:
        settings = load_settings(args.env_file, **overrides)
    except ConfigError as exc:
        print(f"roompulse: {exc}", file=sys.stderr)
        return EX_CONFIG
    configure_logging(settings.log_level)
    env_file = args.env_file or (DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.is_file() else None)
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
            return cmd_check_config(settings)
        if args.command == "privacy-report":
            from device.privacy import report

            print(report(settings), end="")
            return 0
        return cmd_run(settings)
    except (ConfigError, SourceUnavailable) as exc:
        print(f"roompulse: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (ModelError, SourceError, StateError, RuntimeUnavailable, ValueError) as exc:
        print(f"roompulse: {exc}", file=sys.stderr)
        return 1
