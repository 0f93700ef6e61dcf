"""The web server (Starlette on uvicorn): the page, its JSON, Server-Sent Events, CSV, /metrics.

Routes (all ``GET``):

- ``/``: the page (``static/index.html``; its script and styles are files, no inline code);
- ``/static/...``: the page's files and the vendored chart library (uPlot, MIT);
- ``/api/rooms``: every unit's tile (state, faces present, score, last window and its age);
- ``/api/rooms/{device_id}/windows?hours=H`` or ``?day=YYYY-MM-DD``: the windows of a chart;
- ``/api/events``: Server-Sent Events, one ``data:`` JSON line with the changed tiles and
  the units that got a window, at most every :data:`PUSH_EVERY_S`;
- ``/rooms/{device_id}.csv?from=YYYY-MM-DD&to=YYYY-MM-DD``: the windows of those days;
- ``/metrics``: Prometheus text exposition (``prometheus_client``).

Days are calendar days in the server's time zone. Every response carries a
Content-Security-Policy without inline scripts, ``frame-ancestors 'none'`` and
``X-Frame-Options: DENY``. With ``ROOMPULSE_DASHBOARD_PASSWORD`` (HTTP Basic) or
``ROOMPULSE_DASHBOARD_TOKEN`` (``Authorization: Bearer``) set, every route needs one of them
(401 otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hmac
import io
import json
import logging
import math
import time
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, StateSetMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from device.dashboard.fleet import STATES, Fleet, Room
from device.dashboard.ingest import Ingest
from device.dashboard.settings import Config
from device.dashboard.store import COLUMNS, Store

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PUSH_EVERY_S = 0.5  # tiles changed within this are sent as one event (the page shows a window within ~1 s)
KEEPALIVE_S = 15.0  # an SSE comment line this often keeps proxies from closing an idle stream
MAX_CSV_DAYS = 366

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class Guard:
    """ASGI middleware: security headers on every response; authentication when configured.

    Args:
        app: the application it wraps.
        username, password: HTTP Basic credentials, or ``password=None``.
        token: the bearer token, or ``None``. With neither, requests are not authenticated
            (the settings allow that only on a loopback address).
    """

    def __init__(self, app, username: str, password: str | None, token: str | None):
        self.app = app
        self._basic = (f"{username}:{password}".encode() if password is not None else None)
        self._token = token.encode() if token is not None else None

    def _allowed(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self._basic is None and self._token is None:
            return True
        value = dict(headers).get(b"authorization", b"")
        scheme, _, credential = value.partition(b" ")
        scheme = scheme.lower()
        if scheme == b"basic" and self._basic is not None:
            try:
                given = base64.b64decode(credential.strip(), validate=True)
            except ValueError:
                return False
            return hmac.compare_digest(given, self._basic)
        if scheme == b"bearer" and self._token is not None:
            return hmac.compare_digest(credential.strip(), self._token)
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        if not self._allowed(scope["headers"]):
            challenge = 'Basic realm="RoomPulse dashboard", charset="UTF-8"' if self._basic else 'Bearer'
            response = Response("authentication required\n", status_code=401, media_type="text/plain",
                                headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"})
            return await response(scope, receive, with_headers)
        return await self.app(scope, receive, with_headers)


class Hub:
    """Collects tile changes from the ingest thread and fans them out to every open event stream."""

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self._rooms: dict[str, Room] = {}
        self._windows: set[str] = set()
        self._streams: set[asyncio.Queue] = set()
        self._dirty = asyncio.Event()

    def changed(self, rooms: list[Room], window_ids: set[str]) -> None:
        """Thread-safe: called by the ingest writer after each commit."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._mark, rooms, window_ids)

    def _mark(self, rooms, window_ids) -> None:
        for room in rooms:
            self._rooms[room.device_id] = room
        self._windows |= window_ids
        self._dirty.set()

    async def run(self) -> None:
        """Send what changed, at most every :data:`PUSH_EVERY_S`, until cancelled."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            rooms, self._rooms = self._rooms, {}
            windows, self._windows = self._windows, set()
            now = time.time()
            event = json.dumps({"now_s": now, "tiles": [r.tile(now) for r in rooms.values()],
                                "windows": sorted(windows)})
            for stream in list(self._streams):
                if stream.qsize() < 100:  # a stalled browser: drop, it reloads the tiles on reconnect
                    stream.put_nowait(event)
            await asyncio.sleep(PUSH_EVERY_S)

    def open(self) -> asyncio.Queue:
        stream: asyncio.Queue = asyncio.Queue()
        self._streams.add(stream)
        return stream

    def close(self, stream: asyncio.Queue) -> None:
        self._streams.discard(stream)


class FleetCollector:
    """Prometheus collector: per unit score, faces present, window age, suppression and state."""

    def __init__(self, fleet: Fleet, ingest: Ingest):
        self.fleet = fleet
        self.ingest = ingest

    def collect(self):
        now = time.time()
        score = GaugeMetricFamily("roompulse_engagement_score",
                                  "Share of face detections oriented toward the front in the unit's newest "
                                  "window (0-1); absent while that window is suppressed", labels=["device_id"])
        faces = GaugeMetricFamily("roompulse_faces_present",
                                  "Median faces detected per analysed frame in the newest window",
                                  labels=["device_id"])
        suppressed = GaugeMetricFamily("roompulse_window_suppressed",
                                       "1 when the newest window's score is withheld (fewer faces than the "
                                       "minimum group size)", labels=["device_id"])
        age = GaugeMetricFamily("roompulse_last_window_age_seconds",
                                "Seconds since the end of the newest window", labels=["device_id"])
        state = StateSetMetricFamily("roompulse_unit_state", "The unit's state", labels=["device_id"])
        for room in self.fleet.snapshot():
            w = room.latest
            if w is not None:
                if w.engagement_score is not None:
                    score.add_metric([room.device_id], w.engagement_score)
                faces.add_metric([room.device_id], w.faces_present)
                suppressed.add_metric([room.device_id], 1.0 if w.suppressed else 0.0)
                age.add_metric([room.device_id], max(0.0, now - w.end_s))
            state.add_metric([room.device_id], {s: s == room.state for s in STATES})
        yield from (score, faces, suppressed, age, state)
        c = self.ingest.counters
        stored = CounterMetricFamily("roompulse_dashboard_windows_stored",
                                     "Windows stored since the dashboard started")
        stored.add_metric([], c.stored)
        dup = CounterMetricFamily("roompulse_dashboard_duplicates", "Redelivered windows ignored since start")
        dup.add_metric([], c.duplicates)
        bad = CounterMetricFamily("roompulse_dashboard_invalid_messages", "Payloads dropped as invalid since start")
        bad.add_metric([], c.invalid)
        up = GaugeMetricFamily("roompulse_dashboard_broker_connected", "1 while connected to the broker")
        up.add_metric([], 1.0 if c.connected else 0.0)
        yield from (stored, dup, bad, up)


def _day_bounds(first: date, last: date) -> tuple[float, float]:
    """Unix seconds of ``first`` 00:00 and of the day after ``last``, in the server's time zone."""
    start = datetime(first.year, first.month, first.day).astimezone()
    end = datetime(last.year, last.month, last.day).astimezone() + timedelta(days=1)
    return start.timestamp(), end.timestamp()


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def create_app(config: Config, store: Store, fleet: Fleet, ingest: Ingest | None, hub: Hub) -> Starlette:
    """The ASGI application. ``ingest`` is started and stopped with it (``None`` in unit tests
    that fill the store themselves).
    """
    d = config.dashboard
    min_group = config.broker.min_group_size
    registry = CollectorRegistry(auto_describe=False)
    if ingest is not None:
        registry.register(FleetCollector(fleet, ingest))

    def room_or_404(device_id: str) -> Room | None:
        return fleet.get(device_id)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def rooms(request: Request):
        now = time.time()
        return JSONResponse({"now_s": now, "min_group_size": min_group, "chart_hours": d.chart_hours,
                             "rooms": [r.tile(now) for r in fleet.snapshot()]},
                            headers={"Cache-Control": "no-store"})

    def windows(request: Request):
        device_id = request.path_params["device_id"]
        if room_or_404(device_id) is None:
            return JSONResponse({"error": f"no unit {device_id}"}, status_code=404)
        q = request.query_params
        if "day" in q:
            try:
                day = date.fromisoformat(q["day"])
            except ValueError:
                return _bad("day must be YYYY-MM-DD")
            from_s, to_s = _day_bounds(day, day)
        else:
            try:
                hours = float(q.get("hours", d.chart_hours))
            except ValueError:
                return _bad("hours must be a number")
            if not 0 < hours <= 48 or math.isnan(hours):
                return _bad("hours must be in (0, 48]")
            to_s = time.time() + 60
            from_s = to_s - 60 - hours * 3600
        rows = store.between(device_id, from_s, to_s)
        return JSONResponse({"device_id": device_id, "from_s": from_s, "to_s": to_s, "min_group_size": min_group,
                             "windows": [{"seq": w.seq, "start_s": w.start_s, "end_s": w.end_s,
                                          "faces_present": w.faces_present,
                                          "engagement_score": w.engagement_score, "suppressed": w.suppressed}
                                         for w in rows]},
                            headers={"Cache-Control": "no-store"})

    def export_csv(request: Request):
        device_id = request.path_params["device_id"]
        if room_or_404(device_id) is None:
            return Response(f"no unit {device_id}\n", status_code=404, media_type="text/plain")
        q = request.query_params
        try:
            first = date.fromisoformat(q["from"]) if "from" in q else date.today()
            last = date.fromisoformat(q["to"]) if "to" in q else first
        except ValueError:
            return Response("from and to must be YYYY-MM-DD\n", status_code=400, media_type="text/plain")
        if last < first or (last - first).days >= MAX_CSV_DAYS:
            return Response(f"to must be on or after from, at most {MAX_CSV_DAYS} days\n", status_code=400,
                            media_type="text/plain")
        from_s, to_s = _day_bounds(first, last)

        def lines():
            buf = io.StringIO()
            out = csv.writer(buf, lineterminator="\n")
            out.writerow(COLUMNS)
            for i, w in enumerate(store.iter_between(device_id, from_s, to_s)):
                out.writerow([w.device_id, w.seq, w.window_start, w.window_end, w.frames_analyzed,
                              w.faces_present, w.faces_present_max,
                              "" if w.engagement_score is None else w.engagement_score,
                              "true" if w.suppressed else "false"])
                if i % 500 == 0:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        name = f"{device_id}_{first.isoformat()}_{last.isoformat()}.csv"
        return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def metrics(request: Request):
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def events(request: Request):
        stream = hub.open()

        async def send():
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(stream.get(), KEEPALIVE_S)
                        yield f"data: {event}\n\n"
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
            finally:
                hub.close(stream)

        return StreamingResponse(send(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @asynccontextmanager
    async def lifespan(app):
        hub.loop = asyncio.get_running_loop()
        pusher = asyncio.create_task(hub.run())
        if ingest is not None:
            ingest.start()
        log.info("dashboard on http://%s/ (history %s)", d.bind, store.path)
        try:
            yield
        finally:
            pusher.cancel()
            if ingest is not None:
                await asyncio.get_running_loop().run_in_executor(None, ingest.stop)

    routes = [
        Route("/", index),
        Route("/api/rooms", rooms),
        Route("/api/rooms/{device_id}/windows", windows),
        Route("/api/events", events),
        Route("/rooms/{device_id}.csv", export_csv),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    password = d.password.get_secret_value() if d.password else None
    token = d.token.get_secret_value() if d.token else None
    return Guard(app, d.username, password, token)
