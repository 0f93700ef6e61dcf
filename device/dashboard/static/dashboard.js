// RoomPulse dashboard page: tiles from /api/rooms, live updates from /api/events (Server-Sent
// Events), one room's chart (uPlot) from /api/rooms/<id>/windows. No inline script (the
// Content-Security-Policy forbids it); every text goes in through textContent.
"use strict";

(function () {
  const STATE_LABELS = {
    online: "online", offline: "offline", paused: "paused", camera_stalled: "camera stalled",
    starting: "starting", finished: "finished", stopped: "stopped", unknown: "no status",
  };
  const SCORE_COLOR = "#3a5bd9";
  const FACES_COLOR = "#c77d18";

  const tilesEl = document.getElementById("tiles");
  const roomEl = document.getElementById("room");
  const chartEl = document.getElementById("chart");
  const liveEl = document.getElementById("live");
  const hoursBtn = document.getElementById("view-hours");
  const dayInput = document.getElementById("view-day");
  const csvFrom = document.getElementById("csv-from");
  const csvTo = document.getElementById("csv-to");
  const csvLink = document.getElementById("csv-link");

  const tiles = new Map(); // device_id -> {el, data}
  let clockOffsetS = 0; // server clock minus this browser's clock, seconds
  let minGroup = 5;
  let chartHours = 3;
  let selected = null;
  let view = { mode: "hours", day: null };
  let plot = null;
  let chartPending = null;
  let chartLoading = false;

  function nowS() { return Date.now() / 1000 + clockOffsetS; }

  function isoDay(d) {
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  }

  function ageText(seconds) {
    if (seconds === null || seconds === undefined) return "no window yet";
    const s = Math.max(0, Math.round(seconds));
    if (s < 90) return `last window ${s} s ago`;
    if (s < 5400) return `last window ${Math.round(s / 60)} min ago`;
    if (s < 172800) return `last window ${Math.round(s / 3600)} h ago`;
    return `last window ${Math.round(s / 86400)} days ago`;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function makeTile(id) {
    const t = el("div", "tile");
    t.setAttribute("role", "button");
    t.tabIndex = 0;
    t.dataset.device = id;
    t.append(el("h2", "name", id), el("div", "state"));
    const figs = el("div", "figures");
    const faces = el("div", "figure faces");
    faces.append(el("b", "value"), el("span", "", "faces present"));
    const score = el("div", "figure score");
    score.append(el("b", "value"), el("span", "", "engagement"));
    figs.append(faces, score);
    t.append(figs, el("div", "suppressed-note"), el("div", "age"));
    const choose = () => { location.hash = "room=" + encodeURIComponent(id); };
    t.addEventListener("click", choose);
    t.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); choose(); } });
    return t;
  }

  function renderTile(entry) {
    const d = entry.data;
    const t = entry.el;
    t.dataset.state = d.state;
    t.querySelector(".state").textContent = STATE_LABELS[d.state] || d.state;
    t.querySelector(".faces .value").textContent = d.faces_present === null ? "\u2013" : String(d.faces_present);
    const score = t.querySelector(".score .value");
    const note = t.querySelector(".suppressed-note");
    if (d.suppressed) {
      score.textContent = "\u2013";
      note.textContent = `no score: fewer than ${minGroup} faces`;
    } else {
      score.textContent = d.engagement_score === null ? "\u2013" : `${Math.round(d.engagement_score * 100)} %`;
      note.textContent = "";
    }
    t.querySelector(".age").textContent = ageText(d.window_end_s === null ? null : nowS() - d.window_end_s);
  }

  function applyTiles(list) {
    for (const d of list) {
      let entry = tiles.get(d.device_id);
      if (!entry) {
        entry = { el: makeTile(d.device_id), data: d };
        tiles.set(d.device_id, entry);
        // keep the grid sorted by device id
        let before = null;
        for (const other of tilesEl.children) {
          if (other.dataset.device > d.device_id) { before = other; break; }
        }
        tilesEl.insertBefore(entry.el, before);
      }
      entry.data = d;
      renderTile(entry);
    }
    if (selected === null) selectFromHash();
  }

  function tickAges() {
    for (const entry of tiles.values()) {
      const d = entry.data;
      entry.el.querySelector(".age").textContent = ageText(d.window_end_s === null ? null : nowS() - d.window_end_s);
    }
  }

  async function loadRooms() {
    const r = await fetch("/api/rooms", { cache: "no-store" });
    const data = await r.json();
    clockOffsetS = data.now_s - Date.now() / 1000;
    minGroup = data.min_group_size;
    chartHours = data.chart_hours;
    hoursBtn.textContent = `Last ${chartHours} h`;
    applyTiles(data.rooms);
  }

  // ---- one room's chart ----

  function selectFromHash() {
    const m = /^#room=(.+)$/.exec(location.hash);
    let id = m ? decodeURIComponent(m[1]) : null;
    if (id === null || !tiles.has(id)) {
      if (!tilesEl.firstElementChild) return;
      id = tilesEl.firstElementChild.dataset.device;
    }
    select(id);
  }

  function select(id) {
    selected = id;
    for (const entry of tiles.values()) entry.el.setAttribute("aria-current", String(entry.data.device_id === id));
    roomEl.hidden = false;
    document.getElementById("room-name").textContent = id;
    updateCsvLink();
    loadChart();
  }

  function setView(mode, day) {
    view = { mode, day };
    hoursBtn.setAttribute("aria-pressed", String(mode === "hours"));
    loadChart();
  }

  function updateCsvLink() {
    if (selected === null) return;
    const from = csvFrom.value || isoDay(new Date());
    const to = csvTo.value || from;
    csvLink.href = `/rooms/${encodeURIComponent(selected)}.csv?from=${from}&to=${to}`;
  }

  // Windows -> uPlot columns [x, score %, faces] (x = window middle, Unix seconds) and the gaps:
  // suppressed windows (no score: fewer than N faces) and stretches with no window at all.
  function columns(windows, threshold) {
    const xs = [], score = [], faces = [], gaps = [];
    let prev = null;
    for (const w of windows) {
      const length = Math.max(1, w.end_s - w.start_s);
      if (prev !== null && w.start_s - prev.end_s > Math.max(2, 0.5 * length)) {
        gaps.push({ from: prev.end_s, to: w.start_s, label: "no windows received" });
        xs.push((prev.end_s + w.start_s) / 2); score.push(null); faces.push(null);
      }
      xs.push((w.start_s + w.end_s) / 2);
      faces.push(w.faces_present);
      if (w.suppressed) {
        score.push(null);
        const last = gaps[gaps.length - 1];
        if (last && last.suppressed && w.start_s - last.to <= Math.max(2, 0.5 * length)) last.to = w.end_s;
        else gaps.push({ from: w.start_s, to: w.end_s, label: `no score: fewer than ${threshold} faces`, suppressed: true });
      } else {
        score.push(w.engagement_score * 100);
      }
      prev = w;
    }
    return { data: [xs, score, faces], gaps };
  }

  function drawGaps(u) {
    for (const old of u.over.querySelectorAll(".gap")) old.remove();
    const width = u.over.clientWidth;
    for (const g of u.gaps || []) {
      let left = u.valToPos(g.from, "x");
      let right = u.valToPos(g.to, "x");
      left = Math.max(0, Math.min(width, left));
      right = Math.max(0, Math.min(width, right));
      if (right - left < 2) right = left + 2;
      const box = el("div", g.suppressed ? "gap suppressed" : "gap missing");
      box.style.left = `${left}px`;
      box.style.width = `${right - left}px`;
      box.title = g.label;
      box.append(el("span", "", g.label));
      u.over.append(box);
    }
  }

  function chartOptions() {
    return {
      width: Math.max(300, chartEl.clientWidth),
      height: 300,
      scales: {
        x: { time: true },
        score: { range: [0, 100] },
        faces: { range: (u, min, max) => [0, Math.max(5, Math.ceil((max || 0) * 1.2))] },
      },
      series: [
        {},
        { label: "engagement score %", scale: "score", stroke: SCORE_COLOR, width: 2, spanGaps: false,
          value: (u, v) => (v === null ? "no score" : `${v.toFixed(0)} %`) },
        { label: "faces present", scale: "faces", stroke: FACES_COLOR, width: 1.5, spanGaps: false },
      ],
      axes: [
        {},
        { scale: "score", label: "score %" },
        { scale: "faces", side: 1, label: "faces", grid: { show: false } },
      ],
      hooks: { draw: [drawGaps] },
    };
  }

  async function loadChart() {
    if (selected === null) return;
    if (chartLoading) { chartPending = true; return; }
    chartLoading = true;
    try {
      const id = selected;
      const q = view.mode === "day" ? `day=${view.day}` : `hours=${chartHours}`;
      const r = await fetch(`/api/rooms/${encodeURIComponent(id)}/windows?${q}`, { cache: "no-store" });
      if (!r.ok || id !== selected) return;
      const data = await r.json();
      const built = columns(data.windows, data.min_group_size);
      if (plot === null) {
        plot = new uPlot(chartOptions(), built.data, chartEl);
        plot.gaps = built.gaps;
        plot.redraw();
      } else {
        plot.gaps = built.gaps;
        plot.setData(built.data);
      }
      // the day view spans the whole day (server's time zone), not just the windows it has
      if (view.mode === "day") plot.setScale("x", { min: data.from_s, max: data.to_s });
      chartEl.dataset.windows = String(data.windows.length);
      chartEl.dataset.device = id;
    } finally {
      chartLoading = false;
      if (chartPending) { chartPending = false; setTimeout(loadChart, 0); }
    }
  }

  // ---- live updates ----

  function connect() {
    const source = new EventSource("/api/events");
    source.onopen = () => {
      liveEl.dataset.state = "live";
      liveEl.textContent = "live";
      loadRooms().then(loadChart); // catch up on what changed while the stream was down
    };
    source.onerror = () => {
      liveEl.dataset.state = "lost";
      liveEl.textContent = "reconnecting";
    };
    source.onmessage = (ev) => {
      const data = JSON.parse(ev.data);
      clockOffsetS = data.now_s - Date.now() / 1000;
      applyTiles(data.tiles);
      const today = isoDay(new Date());
      if (selected !== null && data.windows.includes(selected) && (view.mode === "hours" || view.day === today)) {
        loadChart();
      }
    };
  }

  hoursBtn.addEventListener("click", () => setView("hours", null));
  dayInput.addEventListener("change", () => { if (dayInput.value) setView("day", dayInput.value); });
  csvFrom.addEventListener("change", updateCsvLink);
  csvTo.addEventListener("change", updateCsvLink);
  window.addEventListener("hashchange", selectFromHash);
  window.addEventListener("resize", () => { if (plot) plot.setSize({ width: Math.max(300, chartEl.clientWidth), height: 300 }); });

  const today = isoDay(new Date());
  dayInput.value = today;
  csvFrom.value = today;
  csvTo.value = today;
  hoursBtn.setAttribute("aria-pressed", "true");
  setInterval(tickAges, 1000);
  loadRooms().then(connect);
})();
