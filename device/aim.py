"""``roompulse aim``: aim the camera from a terminal, with nothing image-like written or sent.

The configured source is read and every frame it delivers is analysed; about once a second
(of the source's clock: wall time for cameras and looped files, presentation time for a
file read once) the terminal shows, for the newest analysed frame:

- how many faces were found;
- a coarse character grid of the field of view: each face fills the cells its box covers
  with one digit, its width in tens of pixels (``1`` = 10-19 px ... ``9`` = 90 px or more);
- the smallest and largest face width, pixels;
- the frame rate this unit reaches (frames analysed per second of wall time) and the
  inference time;
- plain advice: faces near the detector's lower size limit, faces cut at the frame edge,
  fewer faces than ``ROOMPULSE_MIN_GROUP_SIZE``, a dark or overexposed picture.

``--json`` prints the same as one JSON object per refresh. Ctrl-C (or the end of a file
that is not looped) ends with a one-paragraph summary. Only counts, boxes and text reach
stdout; the pixels live in memory for the duration of one analysis, as in the service.

The functions that turn faces into the grid and the advice are pure (no I/O, no clock);
:func:`run_aim` is the shell around them.
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from device.config import Settings

# Smallest face width YuNet (yunet_n int8, 480x288 input, threshold 0.7) finds reliably,
# pixels: scripts/face_limit.py shrank the classroom and walking-and-pause clips until faces
# were lost: 50 % of faces 6-7 px wide were found, 85 % at 8-9 px, 89-99 % from 9 to 13 px,
# 100 % from 13 px up (README, "Placing the camera"). Real optics and compression blur more
# than a resampled frame, so below about 1.3x that limit a face is called near the limit.
MIN_FACE_PX = 11.0
NEAR_LIMIT_PX = 14.0
# A box within this many pixels of the frame border is taken as cut by the edge.
EDGE_MARGIN_PX = 2.0
# Mean luma (BT.601, 0-255) below / above which the picture is called dark / overexposed.
# A lit classroom on auto-exposure measures 90-150 (the clips: 95-120); below 50 the
# detector loses faces in noise, above 205 faces wash out. Chosen limits, not data-sheet ones.
DARK_MEAN = 50.0
BRIGHT_MEAN = 205.0
GRID_COLS = 48
# Terminal cells are about twice as tall as wide: half as many rows keep the picture's aspect.
CELL_ASPECT = 2.0
REFRESH_S = 1.0
# Most frames per second offered to the analysis (ROOMPULSE_FPS's upper bound): aim shows
# the rate this unit reaches, not the rate the service is configured for.
AIM_MAX_FPS = 60.0


@dataclass(frozen=True)
class Snapshot:
    """What one refresh shows; no pixels.

    Attributes:
        frame: index of the newest analysed frame in its source.
        width, height: frame size, pixels.
        boxes: ``(x_min, y_min, x_max, y_max)`` of each face, frame pixels.
        brightness: mean luma of the frame, 0-255.
        fps: frames analysed per second of wall time since the previous refresh.
        inference_ms: detector time of the newest frame, milliseconds.
    """

    frame: int
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]
    brightness: float
    fps: float
    inference_ms: float

    @property
    def widths(self) -> list[float]:
        """Face widths, pixels."""
        return [b[2] - b[0] for b in self.boxes]


def grid_shape(width: int, height: int, cols: int = GRID_COLS) -> tuple[int, int]:
    """``(rows, cols)`` of the grid for a ``width`` x ``height`` pixel frame (aspect kept)."""
    return max(1, round(cols * height / width / CELL_ASPECT)), cols


def cell_of(x: float, y: float, width: int, height: int, cols: int = GRID_COLS) -> tuple[int, int]:
    """The ``(row, col)`` grid cell holding frame pixel ``(x, y)``, clamped to the grid."""
    rows, cols = grid_shape(width, height, cols)
    col = min(cols - 1, max(0, int(x * cols / width)))
    row = min(rows - 1, max(0, int(y * rows / height)))
    return row, col


def width_mark(width_px: float) -> str:
    """The grid character of a face ``width_px`` pixels wide: its width in tens of pixels, 1-9."""
    return str(min(9, max(1, int(width_px // 10))))


def grid(snapshot: Snapshot, cols: int = GRID_COLS) -> list[str]:
    """The field of view as text rows: ``.`` empty, a digit where a face is (see :func:`width_mark`).

    Each face fills every cell its box covers; where faces overlap the wider one is drawn.
    """
    rows, cols = grid_shape(snapshot.width, snapshot.height, cols)
    cells = [["."] * cols for _ in range(rows)]
    for box in sorted(snapshot.boxes, key=lambda b: b[2] - b[0]):
        r0, c0 = cell_of(box[0], box[1], snapshot.width, snapshot.height, cols)
        r1, c1 = cell_of(box[2], box[3], snapshot.width, snapshot.height, cols)
        mark = width_mark(box[2] - box[0])
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                cells[r][c] = mark
    return ["".join(row) for row in cells]


def cut_at_edge(box, width: int, height: int, margin: float = EDGE_MARGIN_PX) -> bool:
    """True when a box touches the frame border (within ``margin`` pixels): the face is cut."""
    return box[0] <= margin or box[1] <= margin or box[2] >= width - margin or box[3] >= height - margin


def advice(snapshot: Snapshot, min_group_size: int, fps_setting: float | None = None) -> list[tuple[str, str]]:
    """Plain advice for the installer, as ``(code, sentence)`` pairs; empty when all looks fine.

    Codes: ``no_faces``, ``small_faces``, ``edge_cut``, ``few_faces``, ``dark``,
    ``overexposed``, ``slow`` (fewer frames per second than ``fps_setting``).
    """
    out = []
    n = len(snapshot.boxes)
    if n == 0:
        out.append(("no_faces", "no face found: check that the camera sees the seats, faces toward it, "
                                "and that the room is lit"))
    small = [w for w in snapshot.widths if w < NEAR_LIMIT_PX]
    if small:
        out.append(("small_faces", f"{len(small)} of {n} faces are under {NEAR_LIMIT_PX:.0f} px wide "
                                   f"(smallest {min(small):.0f} px), near the detector's limit of about "
                                   f"{MIN_FACE_PX:.0f} px: farther faces are missed; move the camera closer, "
                                   "use a narrower lens or a larger ROOMPULSE_CAMERA_SIZE"))
    cut = sum(cut_at_edge(b, snapshot.width, snapshot.height) for b in snapshot.boxes)
    if cut:
        out.append(("edge_cut", f"{cut} face(s) cut at the edge of the picture: turn or move the camera "
                                "so the outer seats are inside the view"))
    if 0 < n < min_group_size:
        out.append(("few_faces", f"{n} face(s) found, fewer than ROOMPULSE_MIN_GROUP_SIZE={min_group_size}: "
                                 "with the room this full no score would be published"))
    if snapshot.brightness < DARK_MEAN:
        out.append(("dark", f"the picture is dark (mean brightness {snapshot.brightness:.0f} of 255): "
                            "switch on the lights or point the camera away from a dark area"))
    elif snapshot.brightness > BRIGHT_MEAN:
        out.append(("overexposed", f"the picture is overexposed (mean brightness {snapshot.brightness:.0f} "
                                   "of 255): keep windows and lamps out of the view"))
    if fps_setting and snapshot.fps and snapshot.fps < fps_setting:
        out.append(("slow", f"{snapshot.fps:.1f} frames/s analysed, below ROOMPULSE_FPS={fps_setting:g}"))
    return out


def render(snapshot: Snapshot, tips: list[tuple[str, str]], source: str) -> str:
    """The text block of one refresh."""
    widths = snapshot.widths
    lines = [f"roompulse aim: {source}, frame {snapshot.frame}, {snapshot.width}x{snapshot.height} px",
             f"faces now: {len(widths)}"
             + (f"   smallest {min(widths):.0f} px, largest {max(widths):.0f} px wide" if widths else ""),
             f"rate: {snapshot.fps:.1f} frames/s analysed, inference {snapshot.inference_ms:.0f} ms, "
             f"brightness {snapshot.brightness:.0f}/255",
             "+" + "-" * GRID_COLS + "+"]
    lines += ["|" + row + "|" for row in grid(snapshot)]
    lines.append("+" + "-" * GRID_COLS + "+")
    lines.append("digits: a face, its width in tens of pixels (1 = 10-19 px, 9 = 90 px or more)")
    lines += [f"advice: {text}" for _, text in tips] or ["advice: none, the view looks usable"]
    return "\n".join(lines)


def as_json(snapshot: Snapshot, tips: list[tuple[str, str]]) -> dict:
    """One ``--json`` line: counts, boxes (frame pixels), widths, rate, brightness, grid, advice."""
    widths = snapshot.widths
    return {
        "frame": snapshot.frame, "width": snapshot.width, "height": snapshot.height,
        "faces": len(widths),
        "boxes": [[round(v, 1) for v in b] for b in snapshot.boxes],
        "smallest_px": round(min(widths), 1) if widths else None,
        "largest_px": round(max(widths), 1) if widths else None,
        "fps": round(snapshot.fps, 2), "inference_ms": round(snapshot.inference_ms, 1),
        "brightness": round(snapshot.brightness, 1),
        "grid": grid(snapshot),
        "advice": [{"code": c, "text": t} for c, t in tips],
    }


def brightness(rgb: np.ndarray) -> float:
    """Mean luma (ITU-R BT.601 weights) of an RGB uint8 (H, W, 3) frame, 0-255.

    Every 4th pixel in each direction is enough for a mean and keeps this under a millisecond.
    """
    sample = rgb[::4, ::4].astype(np.float32)
    return float((sample @ np.array([0.299, 0.587, 0.114], np.float32)).mean())


@dataclass
class Summary:
    """What the closing paragraph reports, accumulated over every analysed frame."""

    frames: int = 0
    counts: list[int] = field(default_factory=list)
    smallest: float | None = None
    largest: float | None = None
    brightness: list[float] = field(default_factory=list)
    advice_seen: dict[str, int] = field(default_factory=dict)
    refreshes: int = 0

    def add_frame(self, widths: list[float], bright: float) -> None:
        self.frames += 1
        self.counts.append(len(widths))
        self.brightness.append(bright)
        if widths:
            self.smallest = min(widths) if self.smallest is None else min(self.smallest, min(widths))
            self.largest = max(widths) if self.largest is None else max(self.largest, max(widths))

    def add_refresh(self, tips: list[tuple[str, str]]) -> None:
        self.refreshes += 1
        for code, _ in tips:
            self.advice_seen[code] = self.advice_seen.get(code, 0) + 1

    def paragraph(self, source: str, seconds: float, min_group_size: int) -> str:
        """One paragraph for the installer."""
        if not self.frames:
            return f"Aimed at {source} for {seconds:.1f} s: no frame was analysed."
        rate = self.frames / seconds if seconds > 0 else 0.0
        text = (f"Aimed at {source} for {seconds:.1f} s: {self.frames} frames analysed "
                f"({rate:.1f} frames/s). Faces per frame: median {statistics.median(self.counts):g}, "
                f"at most {max(self.counts)}, fewest {min(self.counts)}")
        if self.smallest is not None:
            text += f"; face widths from {self.smallest:.0f} to {self.largest:.0f} px"
        text += f"; mean brightness {statistics.fmean(self.brightness):.0f}/255."
        if statistics.median(self.counts) < min_group_size:
            text += (f" With a median below ROOMPULSE_MIN_GROUP_SIZE={min_group_size} the unit would publish "
                     "no score for this view.")
        if self.advice_seen:
            names = {"no_faces": "no face found", "small_faces": "faces near the size limit",
                     "edge_cut": "faces cut at the edge", "few_faces": "fewer faces than the minimum group",
                     "dark": "dark picture", "overexposed": "overexposed picture", "slow": "frame rate below ROOMPULSE_FPS"}
            text += " Advice given: " + ", ".join(
                f"{names.get(c, c)} ({n} of {self.refreshes} refreshes)" for c, n in self.advice_seen.items()) + "."
        else:
            text += " No advice: the view looks usable."
        return text


def run_aim(settings: Settings, as_lines: bool = False, out: TextIO | None = None,
            refresh_s: float = REFRESH_S) -> int:
    """Read the configured source, analyse the newest frame whenever the last analysis is done,
    refresh the view every ``refresh_s`` seconds of the source's clock, end with the summary
    on Ctrl-C or at the end of a file that is not looped.

    The source is read in the service's capture worker (:class:`device.supervisor.Capture`):
    a camera faster than the analysis has its older frames dropped, so the view shows the
    present, not a growing backlog; a stalled camera is reported in the view and re-opened
    with backoff. A file read once is analysed frame by frame.

    Args:
        settings: the source settings, the model settings, ``min_group_size``, ``fps``,
            ``stall_s``, ``hang_s``, ``reopen_backoff_max_s``.
        as_lines: one JSON object per refresh instead of the text view; the summary then is
            a last JSON object ``{"summary": ...}``.
        out: where to print (default stdout).

    Returns:
        0 (Ctrl-C or the end of a file).

    Raises:
        device.sources.SourceError: a file source cannot be opened or read.
        device.sources.SourceUnavailable: picamera2 selected but not installed.
        device.models.ModelError, device.runtime.RuntimeUnavailable, ValueError: as
            :func:`device.pipeline.build_analyzer`.
        RuntimeError: the capture thread died of an unexpected error (a bug).
    """
    from device.config import redact_url
    from device.pipeline import build_analyzer
    from device.sources import describe, make_source, preflight
    from device.supervisor import Capture

    out = out or sys.stdout
    preflight(settings.source)
    analyzer = build_analyzer(settings)
    name = redact_url(settings.source)
    live = describe(settings.source) != "file" or settings.source_loop

    def factory():
        return make_source(settings.source, loop=settings.source_loop, size=settings.camera_wh,
                           timeout_s=settings.source_timeout_s, max_size=settings.max_frame_wh)

    # ROOMPULSE_FPS's upper bound: every frame of a camera up to 60/s is offered, the
    # analysis takes the newest.
    capture = Capture(factory, AIM_MAX_FPS, stall_s=settings.stall_s, hang_s=settings.hang_s, supervised=live,
                      backoff_max_s=settings.reopen_backoff_max_s)
    live_view = not as_lines and out.isatty()
    summary = Summary()
    began = time.monotonic()
    pending = None  # newest analysed frame not yet shown: (frame index, size, boxes, brightness, ms)
    last_shown_stamp = None
    period_start, period_frames = began, 0
    last_stall_note = began

    def show() -> None:
        nonlocal period_start, period_frames, pending
        now = time.monotonic()
        index, (w, h), boxes, bright, ms = pending
        snap = Snapshot(index, w, h, boxes, bright, period_frames / max(now - period_start, 1e-6), ms)
        tips = advice(snap, settings.min_group_size, settings.fps)
        summary.add_refresh(tips)
        if as_lines:
            print(json.dumps(as_json(snap, tips)), file=out, flush=True)
        else:
            print(("\x1b[H\x1b[J" if live_view else "") + render(snap, tips, name) + "\n", file=out, flush=True)
        period_start, period_frames, pending = now, 0, None

    stop = threading.Event()
    # Ctrl-C (and SIGTERM) set a flag the loop checks: an exception raised at an arbitrary
    # point could land inside the capture worker's start-up.
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        capture.start()
        while not stop.is_set():
            now = time.monotonic()
            stalled = capture.supervise(now)
            if capture.crashed is not None:
                raise RuntimeError(f"capture failed: {capture.crashed!r}")
            if capture.finished:
                break
            frame = capture.next_frame(0.2)
            if frame is None:
                if stalled and now - last_stall_note >= refresh_s:
                    last_stall_note = now
                    note = {"advice": [{"code": "no_picture", "text": f"no new picture from {name}: "
                                        "check the camera and its cable or network; re-opening it"}]}
                    print(json.dumps(note) if as_lines else f"roompulse aim: {note['advice'][0]['text']}",
                          file=out, flush=True)
                continue
            if period_frames == 0 and pending is None and last_shown_stamp is None:
                period_start = time.monotonic()  # the rate counts from the first frame, not the open
            faces = analyzer.faces(frame.rgb)
            boxes = tuple(tuple(float(v) for v in f.detection.box) for f in faces)
            bright = brightness(frame.rgb)
            summary.add_frame([b[2] - b[0] for b in boxes], bright)
            period_frames += 1
            pending = (frame.index, (frame.width, frame.height), boxes, bright, analyzer.last_inference_ms)
            if last_shown_stamp is None:
                last_shown_stamp = frame.timestamp  # the first view after one full period
            elif frame.timestamp - last_shown_stamp >= refresh_s:
                last_shown_stamp = frame.timestamp
                show()
        if pending is not None:
            show()
    finally:
        capture.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    paragraph = summary.paragraph(name, time.monotonic() - began, settings.min_group_size)
    if not summary.frames and capture.stall_reason:
        paragraph += f" The camera: {capture.stall_reason}."
    if as_lines:
        print(json.dumps({"summary": paragraph}), file=out, flush=True)
    else:
        print(paragraph, file=out, flush=True)
    # No frame at all is a failed aim (exit 1), not an aim that found nothing.
    return 0 if summary.frames else 1
