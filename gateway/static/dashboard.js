// iotstream live dashboard: plain script, no build step. Protocol: docs/websocket.md.
// The token travels in the Sec-WebSocket-Protocol header (["bearer", token]), never in a URL.
//
// Two connections, so the browser receives at most what it can show, whatever the fleet's rate:
//   fleet:  {"latest_every_ms": FLEET_TICK_MS}: a snapshot of every device's newest prediction,
//           then one frame per tick with the newest prediction of each device that reported;
//   detail: the selected device's full stream (every prediction, resumed with `since` after a
//           reconnect), for its chart, the per-hop latency and the gap/duplicate check.
// Rendering is batched per animation frame, the grid is paged, every buffer has a cap.
// Drift (GET /v1/drift) is polled every state.driftEvery s while the tab is visible, one request
// at a time; feature names for the chart's sensor channels come from GET /v1/models.
(() => {
  "use strict";

  const FLEET_TICK_MS = 500;       // fleet frames: at most 2 a second
  const PAGE_SIZE = 60;            // tiles per page of the grid
  const SERIES_SECONDS = 300;      // chart: the selected device's last 5 minutes ...
  const SERIES_MAX = 6000;         // ... and never more points than this
  const SEQ_WINDOW = 4096;         // gap/duplicate check: sliding window of seq numbers per run
  const MAX_RUNS = 64;             // device runs (boots) tracked by the check, oldest dropped
  const MAX_DEVICES = 20000;       // fleet map bound (the gateway bounds its side too)
  const LATENCY_WINDOW = 1000;     // latency samples per hop
  const FEED_MAX = 50;             // anomaly onsets listed
  const LOST_LISTED = 1000;        // missing seq numbers remembered per run (all are counted)
  const PING_EVERY = 5;            // s without any frame before the page asks for a heartbeat
  const MIN_INTERVAL = { fleet: 250, chart: 150, latency: 1000, feed: 500, detail: 250, drift: 500 };  // ms
  const DRIFT_TIMEOUT_MS = 4000;   // ... given up after this long
  const DRIFT_EVENTS = 8;          // drift events listed
  const DRIFT_TOP = 6;             // features shown per model, largest PSI first
  const CHANNEL_COLOURS = ["#f0a35e", "#9ccc65", "#ba8cff", "#4dd0e1", "#f06292", "#ffd54f",
    "#81c784", "#7986cb", "#ff8a65", "#aed581", "#ce93d8", "#4db6ac", "#e57373", "#90a4ae",
    "#dce775", "#64b5f6"];
  const HOPS = [
    ["device → worker", (p) => p.hops.received_ts - p.hops.device_ts],
    ["inference", (p) => p.hops.inferred_ts - p.hops.received_ts],
    ["worker → redis", (p) => p.hops.published_ts - p.hops.inferred_ts],
    ["redis → gateway", (p, f) => f.sent_ts - p.hops.published_ts],
    ["gateway → browser", (p, f, now) => now - f.sent_ts],
    ["end to end", (p, f, now) => now - p.hops.device_ts],
  ];
  const SEVERITY = { anomaly: 0, silent: 1, healthy: 2 };

  // Gaps and duplicates of one device run over a sliding window of seq numbers: memory is
  // O(SEQ_WINDOW) however long the tab stays open. A seq that leaves the window unseen is
  // counted as missing (and listed, up to LOST_LISTED); one arriving again is a duplicate.
  class SeqWindow {
    constructor(size) {
      this.size = size; this.floor = null; this.hi = null; this.seen = new Set();
      this.lost = []; this.lostCount = 0; this.dups = 0; this.count = 0; this.first = null;
    }
    add(s) {
      this.count++;
      if (this.hi === null) { this.first = this.floor = this.hi = s; this.seen.add(s); return; }
      if (s <= this.hi) {
        if (s >= this.floor) {
          if (this.seen.has(s)) this.dups++; else this.seen.add(s);
        } else {
          const i = this.lost.indexOf(s);   // late, after it was counted missing
          if (i >= 0) { this.lost.splice(i, 1); this.lostCount--; } else this.dups++;
        }
        return;
      }
      const floor = Math.max(this.floor, s - this.size + 1);
      const end = Math.min(floor, this.hi + 1);
      for (let q = this.floor; q < end; q++) if (!this.seen.delete(q)) this.miss(q, 1);
      if (floor > this.hi + 1) this.miss(this.hi + 1, floor - this.hi - 1);
      this.floor = floor; this.hi = s; this.seen.add(s);
    }
    miss(from, n) {
      this.lostCount += n;
      for (let q = from; q < from + n && this.lost.length < LOST_LISTED; q++) this.lost.push(q);
    }
    missing() {
      const seqs = [...this.lost];
      let n = this.lostCount;
      for (let q = this.floor; q !== null && q <= this.hi; q++) {
        if (!this.seen.has(q)) { n++; if (seqs.length < LOST_LISTED) seqs.push(q); }
      }
      return { count: n, seqs };
    }
  }

  // Everything the page knows; exposed for tests and for poking at in the console.
  const state = {
    connected: false, reconnects: 0, frames: 0,
    // Open but silent (no frame of any kind, no answer to our pings) for this long: the
    // badge says "stale" instead of "live" (a hung gateway or a dead network path).
    staleAfter: 12, lastFrameAt: null, stale: false, staleSpells: 0,
    // A device whose newest prediction is older than this is "silent".
    silentAfter: 10,
    // The drift panel asks GET /v1/drift this often (seconds), only while the tab is visible.
    driftEvery: 5,
    closes: [], snapshots: 0, anomaliesSeen: 0, fleetFrames: 0, fleetItems: 0,
    devices: new Map(),  // device -> {p, seenAt (page clock), onsetAt}
    selected: null,
    // the selected device's full stream
    lastId: null, epoch: null, subscribed: [], items: 0, detailConnected: false,
    subscribedAt: Infinity,
    runs: new Map(),     // "<device>" or "<device>#<boot>" -> SeqWindow
    series: { t: [], score: [], anomaly: [], f: [] },  // f: one array per sensor channel
    channels: { show: true, names: [], mode: "" },  // the chart's sensor channels: names, "sigma" or "window" scale
    manifests: new Map(),                  // model name -> {names, scales} (GET /v1/models)
    drift: { models: [], events: [], polls: 0, errors: 0, error: null, at: null },
    latency: HOPS.map(() => []),
    feed: [], rate: 0,
    view: { query: "", sort: "severity", model: "", label: "", status: "", page: 0 },
    counts: { healthy: 0, anomaly: 0, silent: 0 },
    // Models with more than one version live (a canary), per version: devices whose newest
    // prediction it made, how many of those are anomalous, their mean score.
    // [{model, versions: [{version, devices, anomalous, share, meanScore}]}]
    versions: [],
    missing() {          // seq numbers missing per device run (window + those that left it)
      const gaps = {};
      for (const [run, w] of this.runs) { const m = w.missing(); if (m.count) gaps[run] = m.seqs; }
      return gaps;
    },
    missingCount() { let n = 0; for (const w of this.runs.values()) n += w.missing().count; return n; },
    duplicates() { let n = 0; for (const w of this.runs.values()) n += w.dups; return n; },
    received() { let n = 0; for (const w of this.runs.values()) n += w.count; return n; },
    statusOf(id, now = Date.now() / 1000) { return status(this.devices.get(id), now); },
    select(id) { select(id); },
    chartData() { return chart ? chart.data : null; },  // what the chart plots, per series
  };
  window.__iotstream = state;

  const $ = (id) => document.getElementById(id);
  const num = (v) => (Math.abs(v) >= 1000 ? v.toFixed(0) : String(Number(v.toPrecision(3))));
  const psi = (v) => v.toFixed(2);
  let token = null;

  async function getToken(fresh) {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {
      sessionStorage.setItem("iotstream.token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    if (!fresh && sessionStorage.getItem("iotstream.token")) {
      return sessionStorage.getItem("iotstream.token");
    }
    try {
      const r = await fetch("/v1/dev-token", { cache: "no-store" });
      if (r.ok) return (await r.json()).token;
    } catch (e) { /* gateway down: retry later */ }
    return sessionStorage.getItem("iotstream.token");
  }

  function setStatus(kind, text) {
    const el = $("status");
    if (el.className !== "status " + kind) el.className = "status " + kind;
    if (el.textContent !== text) el.textContent = text;
  }

  // One WebSocket that reconnects with backoff; `subscribe()` builds the message sent on open.
  function channel(name, subscribe, onFrame, onState) {
    const c = { socket: null, backoff: 500, open: false };
    async function connect() {
      token = token || await getToken(false);
      if (!token) { setStatus("closed", "no token: open with #token=…"); return retry(); }
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      let opened = false;
      const ws = (c.socket = new WebSocket(`${scheme}://${location.host}/ws`, ["bearer", token]));
      ws.onopen = () => {
        opened = true; c.open = true; c.backoff = 500;
        onState(true);
        const sub = subscribe();
        if (sub) ws.send(JSON.stringify(sub));
      };
      ws.onmessage = (ev) => onFrame(JSON.parse(ev.data), Date.now() / 1000);
      ws.onclose = (ev) => {
        c.open = false;
        state.closes.push(ev.code);
        if (!opened || ev.code === 4401) token = null;  // refused: fetch a token again
        onState(false, ev.code);
        retry();
      };
    }
    function retry() {
      state.reconnects++;
      setTimeout(connect, c.backoff);
      c.backoff = Math.min(c.backoff * 2, 5000);
    }
    c.connect = connect;
    c.send = (msg) => { if (c.open && c.socket.readyState === 1) c.socket.send(JSON.stringify(msg)); };
    return c;
  }

  function seen(frame, now) {
    state.frames++;
    state.lastFrameAt = now;
    if (frame.type === "error") console.warn("gateway:", frame.code, frame.message);
  }

  // --- fleet: the newest prediction per device, once per tick
  const fleet = channel("fleet", () => ({ type: "subscribe", latest_every_ms: FLEET_TICK_MS }),
    (frame, now) => {
      seen(frame, now);
      if (frame.type !== "predictions") return;
      state.fleetFrames++;
      if (frame.snapshot) state.snapshots++;
      const sent = frame.sent_ts || now;
      let advanced = 0;
      for (const p of frame.items) {
        state.fleetItems++;
        const d = p.device_id;
        const prev = state.devices.get(d);
        // When the gateway saw it, carried over to the page's clock (no clock sync needed).
        const seenAt = now - Math.max(0, sent - (p.hops.published_ts || sent));
        const entry = { p, seenAt, onsetAt: prev ? prev.onsetAt : null };
        if (p.anomaly && !(prev && prev.p.anomaly)) {
          entry.onsetAt = seenAt;
          state.anomaliesSeen++;
          state.feed.unshift(p);
          if (state.feed.length > FEED_MAX) state.feed.pop();
          dirty.feed = true;
        }
        if (!frame.snapshot && prev && prev.p.boot === p.boot && p.seq > prev.p.seq) {
          advanced += p.seq - prev.p.seq;  // every seq in between was predicted on the way
        }
        if (!prev && state.devices.size >= MAX_DEVICES) continue;
        state.devices.set(d, entry);
      }
      rateSamples.push([now, advanced]);
      if (!state.selected && frame.items.length) {
        select([...state.devices.keys()].sort()[0]);
      }
      markDirty("fleet", "detail");
    },
    (open, code) => {
      state.connected = open;
      if (open) { state.lastFrameAt = Date.now() / 1000; state.stale = false; setStatus("open", "live"); }
      else setStatus("closed", `reconnecting (${code})`);
    });

  // --- detail: the selected device's every prediction
  const detail = channel("detail", () => {
    if (!state.selected) return null;
    state.subscribedAt = Date.now() / 1000;
    const sub = { type: "subscribe", devices: [state.selected], since: state.lastId || "-2000" };
    if (state.epoch) sub.epoch = state.epoch;
    return sub;
  }, (frame, now) => {
    seen(frame, now);
    switch (frame.type) {
      case "subscribed":
        state.subscribed.push(frame.recovered);
        state.epoch = frame.epoch;
        if (!state.lastId || !frame.recovered) state.lastId = frame.last_id;
        break;
      case "predictions":
        for (const p of frame.items) if (p.device_id === state.selected) take(p, frame, now);
        if (frame.last_id) state.lastId = frame.last_id;
        markDirty("chart", "latency", "detail");
        break;
      case "heartbeat":
        if (frame.last_id) state.lastId = frame.last_id;
        break;
    }
  }, (open) => { state.detailConnected = open; });

  function take(p, frame, now) {
    const s = state.series;
    s.t.push(p.hops.device_ts); s.score.push(p.score); s.anomaly.push(p.anomaly ? p.score : null);
    const f = p.features || [];
    while (s.f.length < f.length) s.f.push(new Array(s.t.length - 1).fill(null));
    for (let k = 0; k < s.f.length; k++) s.f[k].push(k < f.length ? f[k] : null);
    if (frame.snapshot) return;
    const run = p.boot == null ? p.device_id : `${p.device_id}#${p.boot}`;
    let w = state.runs.get(run);
    if (!w) {
      if (state.runs.size >= MAX_RUNS) state.runs.delete(state.runs.keys().next().value);
      state.runs.set(run, (w = new SeqWindow(SEQ_WINDOW)));
    }
    w.add(p.seq);
    state.items++;
    // Latency of live predictions only: history replayed on (re)subscribe says how long
    // the page was away, not how fast the pipeline is.
    if (p.hops.published_ts >= state.subscribedAt) HOPS.forEach(([, f], i) => {
      const v = f(p, frame, now);
      if (Number.isFinite(v)) {
        const l = state.latency[i];
        l.push(v);
        if (l.length > LATENCY_WINDOW) l.splice(0, l.length - LATENCY_WINDOW);
      }
    });
  }

  function trimSeries() {
    const s = state.series, n = s.t.length;
    if (!n) return;
    const oldest = s.t[n - 1] - SERIES_SECONDS;
    let cut = Math.max(0, n - SERIES_MAX);
    while (cut < n && s.t[cut] < oldest) cut++;
    if (cut) {
      s.t.splice(0, cut); s.score.splice(0, cut); s.anomaly.splice(0, cut);
      for (const c of s.f) c.splice(0, cut);
    }
  }

  function select(id) {
    if (!id || id === state.selected) return;
    state.selected = id;
    state.lastId = null; state.epoch = null; state.runs = new Map();
    state.series = { t: [], score: [], anomaly: [], f: [] };
    state.latency = HOPS.map(() => []);
    if (detail.open) {
      state.subscribedAt = Date.now() / 1000;
      detail.send({ type: "subscribe", devices: [id], since: "-2000" });
    } else if (!detail.socket) {
      detail.connect();
    }
    markDirty("fleet", "chart", "latency", "detail");
  }

  // --- rate: seq advance of every device between ticks, over the last 5 s
  const rateSamples = [];
  function updateRate(now) {
    while (rateSamples.length && rateSamples[0][0] < now - 5) rateSamples.shift();
    if (rateSamples.length < 2) { state.rate = 0; return; }
    const span = rateSamples[rateSamples.length - 1][0] - rateSamples[0][0];
    let sum = 0;
    for (let i = 1; i < rateSamples.length; i++) sum += rateSamples[i][1];
    state.rate = span > 0 ? sum / span : 0;
  }

  // --- what a device is, one story per tile
  function status(e, now) {
    if (!e) return null;
    if (now - e.seenAt > state.silentAfter) return "silent";
    return e.p.anomaly ? "anomaly" : "healthy";
  }

  // Colour is the anomaly flag (score above the model's threshold); the label is the
  // classifier's most likely class. They can disagree: a fault classifier flags an anomaly
  // when P(normal) < 1 - threshold, while "normal" may still be the single most likely class.
  // The tile then says so instead of showing a red "normal".
  function describe(p) {
    if (p.probabilities) {
      const pn = p.probabilities.normal;
      if (p.anomaly) {
        return p.label && p.label !== "normal"
          ? p.label
          : `no clear fault (normal ${Math.round(100 * (pn ?? 0))}%)`;
      }
      return p.label || "normal";
    }
    return p.anomaly ? "anomaly" : "normal";
  }

  function scoreText(p) {
    return p.probabilities ? `P(fault) ${p.score.toFixed(2)}` : `error ${p.score.toFixed(3)}`;
  }

  function ago(seconds) {
    if (seconds < 1) return "now";
    if (seconds < 90) return `${Math.floor(seconds)} s ago`;
    if (seconds < 5400) return `${Math.floor(seconds / 60)} min ago`;
    return `${Math.floor(seconds / 3600)} h ago`;
  }

  // --- the view: search, filters, sort, page
  function matcher(query) {
    const q = query.trim().toLowerCase();
    if (!q) return () => true;
    if (/[*?[]/.test(q)) {
      const re = new RegExp("^" + q.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*")
        .replace(/\?/g, ".").replace(/\[!/g, "[^") + "$");
      return (id) => re.test(id.toLowerCase());
    }
    return (id) => id.toLowerCase().includes(q);
  }

  function visibleDevices(now) {
    const v = state.view, match = matcher(v.query);
    const counts = { healthy: 0, anomaly: 0, silent: 0 };
    const models = new Set(), labels = new Set(), rows = [];
    const byVersion = new Map();  // model -> version -> [devices, anomalous, score sum]
    for (const [id, e] of state.devices) {
      const st = status(e, now);
      counts[st]++;
      models.add(e.p.model.name);
      let vs = byVersion.get(e.p.model.name);
      if (!vs) byVersion.set(e.p.model.name, (vs = new Map()));
      const agg = vs.get(e.p.model.version) || [0, 0, 0];
      agg[0]++; agg[1] += e.p.anomaly ? 1 : 0; agg[2] += e.p.score;
      vs.set(e.p.model.version, agg);
      const label = describe(e.p);
      labels.add(e.p.label || (e.p.anomaly ? "anomaly" : "normal"));
      if (v.status && st !== v.status) continue;
      if (v.model && e.p.model.name !== v.model) continue;
      if (v.label && (e.p.label || (e.p.anomaly ? "anomaly" : "normal")) !== v.label) continue;
      if (!match(id)) continue;
      rows.push({ id, e, st, label });
    }
    const byName = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    if (v.sort === "severity") {
      // anomalous first, then silent (longest silent first), then healthy; by name within a
      // state, so tiles do not jump around between ticks (scores of different models do not
      // compare anyway: a probability and a reconstruction error)
      rows.sort((a, b) => SEVERITY[a.st] - SEVERITY[b.st] ||
        (a.st === "silent" ? a.e.seenAt - b.e.seenAt : 0) || byName(a, b));
    } else if (v.sort === "last-seen") {
      rows.sort((a, b) => a.e.seenAt - b.e.seenAt || byName(a, b));
    } else {
      rows.sort(byName);
    }
    state.counts = counts;
    state.versions = [...byVersion].filter(([, vs]) => vs.size > 1)
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([model, vs]) => ({
        model,
        versions: [...vs].sort((a, b) => a[0].localeCompare(b[0], undefined, { numeric: true }))
          .map(([version, [devices, anomalous, sum]]) =>
            ({ version, devices, anomalous, share: anomalous / devices, meanScore: sum / devices })),
      }));
    return { rows, models, labels };
  }

  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

  function syncOptions(select, values, all) {
    const want = ["", ...[...values].sort()];
    const have = [...select.options].map((o) => o.value);
    if (want.length === have.length && want.every((x, i) => x === have[i])) return;
    const keep = select.value;
    select.replaceChildren(...want.map((x) => new Option(x || all, x)));
    select.value = want.includes(keep) ? keep : "";
  }

  const tiles = [];  // a fixed pool of PAGE_SIZE tiles, filled in place
  function tile(i) {
    if (tiles[i]) return tiles[i];
    const el = document.createElement("div");
    el.className = "device";
    el.tabIndex = 0;
    el.setAttribute("role", "button");
    el.innerHTML = '<div class="id"></div><div class="meta"><span class="label"></span>' +
      '<span class="score"></span></div><div class="bar"><i></i></div><div class="seen"></div>';
    const t = { el, id: el.children[0], label: el.querySelector(".label"),
      score: el.querySelector(".score"), bar: el.querySelector(".bar i"),
      seen: el.querySelector(".seen"), key: "", aria: "" };
    el.addEventListener("click", () => select(el.dataset.device));
    el.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(el.dataset.device); }
    });
    return (tiles[i] = t);
  }

  function renderFleet(now) {
    const { rows, models, labels } = visibleDevices(now);
    const v = state.view, pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    v.page = Math.min(v.page, pages - 1);
    const start = v.page * PAGE_SIZE, shown = rows.slice(start, start + PAGE_SIZE);
    const grid = $("fleet");
    shown.forEach((r, i) => {
      const t = tile(i), p = r.e.p;
      const silentFor = now - r.e.seenAt;
      const key = `${r.id}|${r.st}|${r.label}|${p.score}|${r.id === state.selected}`;
      if (t.key !== key) {
        t.key = key;
        t.el.dataset.device = r.id;
        t.el.className = `device ${r.st}${r.id === state.selected ? " selected" : ""}`;
        t.el.setAttribute("aria-pressed", String(r.id === state.selected));
        setText(t.id, r.id);
        setText(t.label, r.st === "silent" ? "silent" : r.label);
        t.label.title = r.label;
        setText(t.score, scoreText(p));
        t.bar.style.width = `${Math.min(100, p.score * 100).toFixed(0)}%`;
      }
      setText(t.seen, r.st === "silent" ? `last seen ${ago(silentFor)}` : "");
      const aria = `${r.id}: ${r.st === "anomaly" ? "anomaly, " + r.label : r.st}, ` +
        `${scoreText(p)}, model ${p.model.name}${r.st === "silent" ? ", last seen " + ago(silentFor) : ""}`;
      if (t.aria !== aria) { t.aria = aria; t.el.setAttribute("aria-label", aria); }
      if (grid.children[i] !== t.el) grid.insertBefore(t.el, grid.children[i] || null);
    });
    while (grid.children.length > shown.length) grid.lastChild.remove();
    setText($("page-info"), rows.length
      ? `${start + 1}–${start + shown.length} of ${rows.length}` : "no device matches");
    $("page-prev").disabled = v.page === 0;
    $("page-next").disabled = v.page >= pages - 1;
    renderVersions();
    syncOptions($("filter-model"), models, "all models");
    syncOptions($("filter-label"), labels, "all labels");
    const c = state.counts;
    setText($("silent-after"), String(state.silentAfter));
    setText($("stat-devices"), String(state.devices.size));
    setText($("count-healthy"), String(c.healthy));
    setText($("count-anomaly"), String(c.anomaly));
    setText($("count-silent"), String(c.silent));
    setText($("stat-anomalies"), String(c.anomaly));
    for (const b of document.querySelectorAll(".counts button")) {
      b.setAttribute("aria-pressed", String(b.dataset.status === v.status));
    }
  }

  // Side by side: each version of a model that has more than one live (a canary), from the
  // newest prediction of each device. Redrawn only when a figure changes.
  let versionsKey = "";
  function renderVersions() {
    const list = state.versions, box = $("versions");
    const key = JSON.stringify(list.map((m) => [m.model, m.versions.map((v) =>
      [v.version, v.devices, v.anomalous, v.meanScore.toFixed(3)])]));
    if (key === versionsKey) return;
    versionsKey = key;
    box.hidden = !list.length;
    $("versions-models").replaceChildren(...list.map((m) => {
      const total = m.versions.reduce((n, v) => n + v.devices, 0);
      const table = el("table", "versions-table");
      table.dataset.model = m.model;
      const cap = el("caption");
      cap.append(el("b", "", m.model), ` · ${m.versions.length} versions on ${total} devices`);
      const head = el("thead"), hr = el("tr");
      for (const h of ["version", "devices", "anomalous", "mean score"]) {
        const th = el("th", "", h);
        th.scope = "col";
        hr.append(th);
      }
      head.append(hr);
      const body = el("tbody");
      for (const v of m.versions) {
        const tr = el("tr");
        tr.dataset.version = v.version;
        const th = el("th", "", `v${v.version}`);
        th.scope = "row";
        tr.append(th,
          el("td", "devices", `${v.devices} (${Math.round((100 * v.devices) / total)}%)`),
          el("td", v.anomalous ? "anomalous" : "", `${v.anomalous} (${(100 * v.share).toFixed(0)}%)`),
          el("td", "score", num(v.meanScore)));
        body.append(tr);
      }
      table.append(cap, head, body);
      return table;
    }));
  }

  // The selected device's sensor channels: names from its model's manifest, else from the
  // model's drift report when the count matches, else f0..fn; and how to scale them.
  function channelInfo(n) {
    const e = state.devices.get(state.selected);
    const model = e && e.p.model.name;
    const m = model && state.manifests.get(model);
    if (m && m.names.length === n) return { names: m.names, scales: m.scales };
    const d = state.drift.models.find((x) => x.model === model);
    const names = d && d.features.length === n ? d.features.map((x) => x.name) : null;
    return { names: names || Array.from({ length: n }, (_, k) => `f${k}`), scales: null };
  }

  // Value at quantile p of a manifest reference's binned feature (edges[i] has the share of
  // rows below it = shares[0] + ... + shares[i]), by linear interpolation.
  function quantileAt(edges, shares, p) {
    const pts = [];
    let cum = 0;
    edges.forEach((x, i) => { cum += shares[i]; pts.push([cum, x]); });
    if (pts.length < 2) return null;
    if (p <= pts[0][0]) return pts[0][1];
    for (let i = 1; i < pts.length; i++) {
      const [c0, x0] = pts[i - 1], [c1, x1] = pts[i];
      if (p <= c1) return c1 > c0 ? x0 + ((p - c0) / (c1 - c0)) * (x1 - x0) : x1;
    }
    return pts[pts.length - 1][1];
  }

  // Per channel, the training data's median and a robust standard deviation (the 20-80 %
  // spread / 1.683, exact for a normal distribution); null unless every channel has one.
  function referenceScales(ref) {
    if (!ref || !Array.isArray(ref.edges) || !Array.isArray(ref.shares)) return null;
    const out = ref.edges.map((edges, i) => {
      const lo = quantileAt(edges, ref.shares[i], 0.2), hi = quantileAt(edges, ref.shares[i], 0.8);
      const mid = quantileAt(edges, ref.shares[i], 0.5);
      return lo !== null && hi > lo ? { mid, spread: (hi - lo) / 1.683 } : null;
    });
    return out.length && out.every(Boolean) ? out : null;
  }

  // A channel on the chart's right axis: in standard deviations from the training median when
  // the manifest has the training reference (a healthy channel stays within about ±2, a
  // faulty one leaves), else scaled 0..1 over the window (its shape only: the channels range
  // from kurtosis ~3 to shaft speed ~1,500 rpm). The legend shows raw values either way.
  function channelValues(values, scale) {
    if (scale) return values.map((v) => (v === null ? null : (v - scale.mid) / scale.spread));
    let lo = Infinity, hi = -Infinity;
    for (const v of values) if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const span = hi - lo;
    return values.map((v) => (v === null ? null : span > 0 ? (v - lo) / span : 0.5));
  }

  let chart = null, chartKey = "";
  function renderChart() {
    trimSeries();
    const s = state.series, box = $("chart"), ch = state.channels;
    const info = ch.show && s.f.length ? channelInfo(s.f.length) : { names: [], scales: null };
    const names = info.names;
    ch.names = names;
    ch.mode = !names.length ? "" : info.scales ? "sigma" : "window";
    const data = [s.t, s.score, s.anomaly,
      ...names.map((_, k) => channelValues(s.f[k], info.scales && info.scales[k]))];
    const key = `${ch.mode}|${names.join("|")}`;
    if (!chart || key !== chartKey) {
      if (chart) chart.destroy();
      chartKey = key;
      const raw = (k) => (u, v, si, i) => (i == null || s.f[k][i] == null ? "–" : num(s.f[k][i]));
      const axis = ch.mode === "sigma" ? "channels: σ from the training median" : "channels, scaled 0–1 over the window";
      chart = new uPlot({
        width: Math.max(300, box.clientWidth), height: names.length ? 300 : 220,
        scales: ch.mode === "window" ? { ch: { range: [-0.05, 1.05] } } : {},
        series: [
          {},
          { label: "score", stroke: "#4ea1ff", width: 2.5 },
          { label: "anomaly", stroke: "#e5484d", width: 0, points: { show: true, size: 6, fill: "#e5484d" } },
          ...names.map((name, k) => ({
            label: name, scale: "ch", width: 1, value: raw(k), points: { show: false },
            stroke: CHANNEL_COLOURS[k % CHANNEL_COLOURS.length] + "c0",
          })),
        ],
        axes: [
          { stroke: "#8193a6", grid: { stroke: "#273240" } },
          { stroke: "#8193a6", grid: { stroke: "#273240" }, label: "score" },
          ...(names.length ? [{ scale: "ch", side: 1, stroke: "#8193a6", grid: { show: false }, label: axis }] : []),
        ],
      }, data, box);
      box.setAttribute("aria-label", names.length
        ? `Score of the selected device over time, with its ${names.length} sensor channels (${axis})`
        : "Score of the selected device over time");
      setText($("chart-note"), !names.length ? "" : ch.mode === "sigma"
        ? "Score on the left axis. Sensor channels on the right, in standard deviations from the median of the model's training data (a healthy channel stays within about ±2). Hover for raw values; click a name to hide it."
        : "Score on the left axis. Sensor channels on the right, each scaled to 0–1 over the window (the model's manifest has no training reference). Hover for raw values; click a name to hide it.");
    } else {
      chart.setData(data);
    }
  }
  window.addEventListener("resize", () => {
    if (chart) chart.setSize({ width: Math.max(300, $("chart").clientWidth), height: chart.height });
  });

  function renderDetail(now) {
    const id = state.selected, e = id && state.devices.get(id);
    setText($("chart-device"), id || "–");
    if (!e) return;
    const p = e.p, st = status(e, now);
    setText($("chart-label"), `${p.model.name} v${p.model.version} (${p.model.variant})`);
    const el = $("detail-state");
    if (el.className !== `pill ${st}`) el.className = `pill ${st}`;
    setText(el, st === "anomaly" ? `anomaly · ${describe(p)}` : st === "silent" ? "silent" : `healthy · ${describe(p)}`);
    setText($("detail-score"), scoreText(p));
    setText($("detail-seen"), `last seen ${ago(now - e.seenAt)}`);
    const probs = p.probabilities ? Object.entries(p.probabilities).sort((a, b) => b[1] - a[1])
      .slice(0, 3).map(([k, x]) => `${k} ${(100 * x).toFixed(0)}%`).join(" · ") : "";
    setText($("detail-probs"), probs);
    setText($("detail-check"), `${state.received()} received · ${state.missingCount()} missing · ` +
      `${state.duplicates()} duplicated (last ${SEQ_WINDOW} seq per run)`);
  }

  function pct(sorted, q) {
    return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN;
  }

  function ms(v) { return Number.isFinite(v) ? `${(v * 1000).toFixed(1)} ms` : "–"; }

  function renderLatency() {
    const rows = HOPS.map(([name], i) => {
      const sorted = Float64Array.from(state.latency[i]).sort();
      return [name, pct(sorted, 0.5), pct(sorted, 0.99)];
    });
    const worst = Math.max(...rows.map((r) => r[2]).filter(Number.isFinite), 0.001);
    $("latency").tBodies[0].innerHTML = rows.map(([name, p50, p99]) =>
      `<tr><td>${name}</td><td>${ms(p50)}</td><td>${ms(p99)}</td>` +
      `<td class="bar"><i style="width:${Number.isFinite(p99) ? Math.max(1, (100 * p99) / worst) : 0}%"></i></td></tr>`
    ).join("");
  }

  function renderFeed() {
    $("feed").replaceChildren(...state.feed.map((p) => {
      const li = document.createElement("li");
      li.innerHTML = "<time></time><button class=dev></button><span class=label></span><span class=score></span>";
      li.querySelector("time").textContent = new Date(p.hops.device_ts * 1000).toLocaleTimeString();
      const dev = li.querySelector(".dev");
      dev.textContent = p.device_id;
      dev.onclick = () => select(p.device_id);
      li.querySelector(".label").textContent = describe(p);
      li.querySelector(".score").textContent = `${scoreText(p)} · seq ${p.seq}`;
      return li;
    }));
  }

  // --- drift: GET /v1/drift, one request at a time, only while the tab is visible
  async function api(path) {
    token = token || await getToken(false);
    const ctl = new AbortController(), timer = setTimeout(() => ctl.abort(), DRIFT_TIMEOUT_MS);
    try {
      const r = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store", signal: ctl.signal });
      if (r.status === 401) token = null;  // fetched again next time
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  }

  let driftBusy = false, driftTimer = null;
  async function pollDrift() {
    clearTimeout(driftTimer);
    driftTimer = null;
    if (document.hidden) return;  // resumed by visibilitychange
    if (!driftBusy) {
      driftBusy = true;
      const d = state.drift;
      try {
        const view = await api(`/v1/drift?events=${DRIFT_EVENTS}`);
        d.models = view.models; d.events = view.events; d.error = null;
        d.at = Date.now() / 1000; d.polls++;
      } catch (e) {
        d.errors++; d.error = e.name === "AbortError" ? "no answer" : e.message;
      } finally {
        driftBusy = false;
      }
      markDirty("drift", "chart");
    }
    if (!document.hidden && !driftTimer) driftTimer = setTimeout(pollDrift, 1000 * state.driftEvery);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) pollDrift(); });

  async function loadManifests() {
    try {
      for (const m of await api("/v1/models")) {
        if (m && m.name && m.input && Array.isArray(m.input.feature_names)) {
          state.manifests.set(m.name, { names: m.input.feature_names, scales: referenceScales(m.reference) });
        }
      }
      markDirty("chart");
    } catch (e) { /* no models on this gateway: channels are named from drift reports or f0..fn */ }
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const clock = (ts) => new Date(ts * 1000).toLocaleTimeString();

  function driftCard(m) {
    const card = el("article", `drift-model ${m.drifting ? "drifting" : "stable"}`);
    const verdict = m.drifting ? "drifting" : "stable";
    card.setAttribute("aria-label", `${m.model} version ${m.version}: ${verdict}, ` +
      `largest PSI ${psi(m.psi_max)}, threshold ${psi(m.threshold)}`);
    const head = el("div", "drift-head");
    head.append(el("b", "", m.model), el("span", "ver", `v${m.version}`),
      el("span", `pill ${m.drifting ? "anomaly" : "healthy"}`, verdict),
      el("span", "psi", `PSI max ${psi(m.psi_max)} / threshold ${psi(m.threshold)}`));
    const meta = el("div", "drift-meta",
      `${m.window.toLocaleString()} live readings · measured ${clock(m.ts)} by ${m.worker_id}`);
    const feats = [...m.features].sort((a, b) => b.psi - a.psi);
    const scale = Math.max(2 * m.threshold, m.psi_max, 1e-9);
    const list = el("ol", "drift-features");
    for (const f of feats.slice(0, DRIFT_TOP)) {
      const over = f.psi > m.threshold;
      const li = el("li", over ? "over" : "");
      const bar = el("span", "drift-bar");
      bar.setAttribute("aria-hidden", "true");
      const fill = el("i");
      fill.style.width = `${Math.min(100, (100 * f.psi) / scale).toFixed(1)}%`;
      const tick = el("u");
      tick.style.left = `${Math.min(100, (100 * m.threshold) / scale).toFixed(1)}%`;
      bar.append(fill, tick);
      li.append(el("span", "name", f.name), bar, el("span", "val", `PSI ${psi(f.psi)}`),
        el("span", "means", `live ${num(f.live_mean)} · ref ${num(f.reference_mean)}`));
      list.append(li);
    }
    card.append(head, meta, list);
    if (feats.length > DRIFT_TOP) {
      card.append(el("div", "drift-meta", `${feats.length - DRIFT_TOP} more features, PSI ≤ ${psi(feats[DRIFT_TOP].psi)}`));
    }
    return card;
  }

  function renderDrift() {
    const d = state.drift, box = $("drift-models");
    const cards = d.models.map(driftCard);
    if (!cards.length) {
      cards.push(el("p", "drift-empty", d.polls ? "No drift reported yet: workers report once a " +
        "model's live window has filled." : "Waiting for the first drift report…"));
    }
    box.replaceChildren(...cards);
    setText($("drift-error"), d.error ? `drift unavailable (${d.error}); retrying every ${state.driftEvery} s` : "");
    $("drift-events").replaceChildren(...d.events.map((e) => {
      const li = el("li", e.drifting ? "start" : "end");
      const t = el("time", "", clock(e.ts));
      t.dateTime = new Date(e.ts * 1000).toISOString();
      li.append(t, el("b", "", `${e.model} v${e.version}`),
        el("span", "what", e.drifting ? "started drifting" : "back under the threshold"),
        el("span", "psi", `PSI max ${psi(e.psi_max)} (${e.feature}), threshold ${psi(e.threshold)}`));
      return li;
    }));
    const drifting = d.models.filter((m) => m.drifting).length;
    setText($("drift-summary"), d.models.length
      ? `${drifting} of ${d.models.length} model${d.models.length > 1 ? "s" : ""} drifting` : "");
  }

  // Heartbeats come only after the gateway's GATEWAY_HEARTBEAT_S of silence, which the page
  // does not know: it pings when quiet, so any healthy gateway answers within PING_EVERY.
  let lastPing = 0;
  function checkLiveness(now) {
    if (!state.connected || state.lastFrameAt === null) return;
    const quiet = now - state.lastFrameAt;
    const every = Math.min(PING_EVERY, state.staleAfter / 3);
    if (quiet >= every && now - lastPing >= every) {
      fleet.send({ type: "ping" });
      lastPing = now;
    }
    const stale = quiet >= state.staleAfter;
    if (stale && !state.stale) state.staleSpells++;
    if (stale) setStatus("stale", `stale: nothing for ${Math.floor(quiet)} s`);
    else if (state.stale) setStatus("open", "live");
    state.stale = stale;
  }

  // --- render loop: frames only mark panels dirty; one animation frame draws what is due
  const dirty = { fleet: true, chart: false, latency: false, feed: false, detail: false, drift: true };
  const drawn = { fleet: 0, chart: 0, latency: 0, feed: 0, detail: 0, drift: 0 };
  const RENDER = {
    fleet: renderFleet, chart: renderChart, latency: renderLatency, feed: renderFeed,
    detail: renderDetail, drift: renderDrift,
  };
  let pending = false, timer = null;

  function markDirty(...panels) {
    for (const k of panels) dirty[k] = true;
    schedule();
  }

  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(draw);
  }

  function draw(ts) {
    pending = false;
    const now = Date.now() / 1000;
    let wait = Infinity;
    for (const k of Object.keys(dirty)) {
      if (!dirty[k]) continue;
      const left = drawn[k] + MIN_INTERVAL[k] - ts;
      if (left > 0) { wait = Math.min(wait, left); continue; }
      dirty[k] = false;
      drawn[k] = ts;
      RENDER[k](now);
    }
    if (wait < Infinity && !timer) timer = setTimeout(() => { timer = null; schedule(); }, wait);
  }

  // Once a second: silence grows without any frame arriving, so re-derive it.
  setInterval(() => {
    const now = Date.now() / 1000;
    checkLiveness(now);
    updateRate(now);
    setText($("stat-rate"), state.rate.toFixed(0));
    markDirty("fleet", "detail");
  }, 1000);

  // --- controls
  function bindControls() {
    const v = state.view;
    $("search").addEventListener("input", (ev) => { v.query = ev.target.value; v.page = 0; markDirty("fleet"); });
    $("search").addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter") return;
      renderFleet(Date.now() / 1000);  // the query may be newer than the last drawn grid
      const first = $("fleet").querySelector(".device");
      if (first) { select(first.dataset.device); first.focus(); }
    });
    $("sort").addEventListener("change", (ev) => { v.sort = ev.target.value; markDirty("fleet"); });
    $("filter-model").addEventListener("change", (ev) => { v.model = ev.target.value; v.page = 0; markDirty("fleet"); });
    $("filter-label").addEventListener("change", (ev) => { v.label = ev.target.value; v.page = 0; markDirty("fleet"); });
    $("page-prev").addEventListener("click", () => { v.page = Math.max(0, v.page - 1); markDirty("fleet"); });
    $("page-next").addEventListener("click", () => { v.page++; markDirty("fleet"); });
    $("show-channels").addEventListener("change", (ev) => {
      state.channels.show = ev.target.checked;
      markDirty("chart");
    });
    for (const b of document.querySelectorAll(".counts button")) {
      b.addEventListener("click", () => {
        v.status = v.status === b.dataset.status ? "" : b.dataset.status;
        v.page = 0;
        markDirty("fleet");
      });
    }
  }

  bindControls();
  fleet.connect();
  loadManifests();
  pollDrift();
})();
