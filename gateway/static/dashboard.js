// iotstream live dashboard: plain script, no build step. Protocol: docs/websocket.md.
// The token travels in the Sec-WebSocket-Protocol header (["bearer", token]), never in a URL.
(() => {
  "use strict";

  const HISTORY = 300;        // points per device kept for the chart
  const LATENCY_WINDOW = 1000;
  const FEED_MAX = 50;
  const PING_EVERY = 5;       // s without any frame before the page asks for a heartbeat
                              // (at most a third of staleAfter)
  const HOPS = [
    ["device → worker", (p) => p.hops.received_ts - p.hops.device_ts],
    ["inference", (p) => p.hops.inferred_ts - p.hops.received_ts],
    ["worker → redis", (p) => p.hops.published_ts - p.hops.inferred_ts],
    ["redis → gateway", (p, f) => f.sent_ts - p.hops.published_ts],
    ["gateway → browser", (p, f, now) => now - f.sent_ts],
    ["end to end", (p, f, now) => now - p.hops.device_ts],
  ];

  // Everything the page knows; exposed for tests and for poking at in the console.
  const state = {
    lastId: null, epoch: null, connected: false, reconnects: 0, frames: 0, items: 0,
    subscribedAt: Infinity,
    // Open but silent (no predictions, no heartbeat, no answer to our pings) for this long:
    // the badge says "stale" instead of "live" (a hung gateway or a dead network path).
    staleAfter: 12, lastFrameAt: null, stale: false, staleSpells: 0,
    subscribed: [], closes: [], snapshots: 0, anomaliesSeen: 0,
    // device run ("<device>" or "<device>#<boot>") -> seq numbers received, in order: a
    // restarted device starts its seq again under a new boot id, so gaps and duplicates
    // are counted per run of a device, never across runs
    seqs: {},
    devices: new Map(),  // device -> latest prediction
    series: new Map(),   // device -> {t: [], score: [], anomaly: []}
    latency: HOPS.map(() => []),
    feed: [], arrivals: [], selected: null,
    missing() {          // seq numbers absent between the first and last seen, per device run
      const gaps = {};
      for (const [device, seqs] of Object.entries(this.seqs)) {
        const seen = new Set(seqs);
        const lo = Math.min(...seqs), hi = Math.max(...seqs), miss = [];
        for (let s = lo; s <= hi; s++) if (!seen.has(s)) miss.push(s);
        if (miss.length) gaps[device] = miss;
      }
      return gaps;
    },
    duplicates() {
      let n = 0;
      for (const seqs of Object.values(this.seqs)) n += seqs.length - new Set(seqs).size;
      return n;
    },
  };
  window.__iotstream = state;

  const $ = (id) => document.getElementById(id);
  let token = null, socket = null, backoff = 500, dirty = true, chart = null, lastPing = 0;

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
    el.className = "status " + kind;
    el.textContent = text;
  }

  async function connect() {
    token = token || await getToken(false);
    if (!token) { setStatus("closed", "no token: open with #token=…"); return retry(); }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let opened = false;
    socket = new WebSocket(`${scheme}://${location.host}/ws`, ["bearer", token]);
    socket.onopen = () => {
      opened = true; backoff = 500; state.connected = true;
      setStatus("open", "live");
      state.subscribedAt = state.lastFrameAt = Date.now() / 1000;
      state.stale = false;
      const sub = { type: "subscribe", since: state.lastId || "-500" };
      if (state.epoch) sub.epoch = state.epoch;
      socket.send(JSON.stringify(sub));
    };
    socket.onmessage = (ev) => handle(JSON.parse(ev.data), Date.now() / 1000);
    socket.onclose = (ev) => {
      state.connected = false;
      state.closes.push(ev.code);
      if (!opened || ev.code === 4401) token = null;  // refused: fetch a token again
      setStatus("closed", `reconnecting (${ev.code})`);
      retry();
    };
  }

  function retry() {
    state.reconnects++;
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  }

  function handle(frame, now) {
    state.frames++;
    state.lastFrameAt = now;
    switch (frame.type) {
      case "subscribed":
        state.subscribed.push(frame.recovered);
        state.epoch = frame.epoch;
        if (!state.lastId || !frame.recovered) state.lastId = frame.last_id;
        break;
      case "predictions":
        if (frame.snapshot) state.snapshots++;
        for (const p of frame.items) take(p, frame, now);
        if (frame.last_id) state.lastId = frame.last_id;
        dirty = true;
        break;
      case "heartbeat":
        if (frame.last_id) state.lastId = frame.last_id;
        break;
      case "error":
        console.warn("gateway:", frame.code, frame.message);
        break;
    }
  }

  function take(p, frame, now) {
    const d = p.device_id;
    if (!frame.snapshot) {
      const run = p.boot == null ? d : `${d}#${p.boot}`;
      const seqs = (state.seqs[run] = state.seqs[run] || []);
      seqs.push(p.seq);
      if (seqs.length > 20000) seqs.splice(0, 10000);  // bounded memory on long runs
      state.items++;
      state.arrivals.push(now);
      // Latency of live predictions only: history replayed on (re)subscribe says how long
      // the page was away, not how fast the pipeline is.
      if (p.hops.published_ts >= state.subscribedAt) HOPS.forEach(([, f], i) => {
        const v = f(p, frame, now);
        if (Number.isFinite(v)) {
          const w = state.latency[i];
          w.push(v);
          if (w.length > LATENCY_WINDOW) w.shift();
        }
      });
    }
    state.devices.set(d, p);
    let s = state.series.get(d);
    if (!s) state.series.set(d, (s = { t: [], score: [], anomaly: [] }));
    s.t.push(p.hops.device_ts); s.score.push(p.score); s.anomaly.push(p.anomaly ? p.score : null);
    if (s.t.length > HISTORY) { s.t.shift(); s.score.shift(); s.anomaly.shift(); }
    if (p.anomaly) {
      state.anomaliesSeen++;
      state.feed.unshift(p);
      if (state.feed.length > FEED_MAX) state.feed.pop();
    }
    if (!state.selected) state.selected = d;
  }

  // --- rendering (at most a few times a second, whatever the message rate)
  const cards = new Map();

  function renderFleet() {
    const grid = $("fleet");
    const ids = [...state.devices.keys()].sort();
    let anomalies = 0;
    for (const id of ids) {
      const p = state.devices.get(id);
      let card = cards.get(id);
      if (!card) {
        card = document.createElement("div");
        card.className = "device";
        card.dataset.device = id;
        card.innerHTML = '<div class="id"></div><div class="meta"><span class="label"></span>' +
          '<span class="score"></span></div><div class="bar"><i></i></div>';
        card.querySelector(".id").textContent = id;
        card.onclick = () => { state.selected = id; dirty = true; };
        cards.set(id, card);
      }
      if (p.anomaly) anomalies++;
      card.classList.toggle("anomaly", p.anomaly);
      card.classList.toggle("selected", id === state.selected);
      card.querySelector(".label").textContent = p.label || (p.anomaly ? "anomaly" : "normal");
      card.querySelector(".score").textContent = p.score.toFixed(3);
      card.querySelector(".bar i").style.width = `${Math.min(100, p.score * 100).toFixed(0)}%`;
    }
    const order = ids.map((id) => cards.get(id));
    if (grid.children.length !== order.length || order.some((c, i) => grid.children[i] !== c)) {
      grid.replaceChildren(...order);
    }
    $("stat-devices").textContent = ids.length;
    $("stat-anomalies").textContent = anomalies;
  }

  function renderChart() {
    const id = state.selected;
    const s = id && state.series.get(id);
    if (!s) return;
    const p = state.devices.get(id);
    $("chart-device").textContent = id;
    $("chart-label").textContent = `${p.model.name} v${p.model.version} (${p.model.variant})`;
    const data = [s.t, s.score, s.anomaly];
    const box = $("chart");
    if (!chart) {
      chart = new uPlot({
        width: Math.max(300, box.clientWidth), height: 240,
        scales: { y: { range: [0, 1] } },
        series: [
          {},
          { label: "score", stroke: "#4ea1ff", width: 1.5 },
          { label: "anomaly", stroke: "#e5484d", width: 0, points: { show: true, size: 7, fill: "#e5484d" } },
        ],
        axes: [{ stroke: "#8193a6", grid: { stroke: "#273240" } }, { stroke: "#8193a6", grid: { stroke: "#273240" } }],
      }, data, box);
      window.addEventListener("resize", () => chart.setSize({ width: Math.max(300, box.clientWidth), height: 240 }));
    } else {
      chart.setData(data);
    }
  }

  function pct(values, q) {
    if (!values.length) return NaN;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  function ms(v) { return Number.isFinite(v) ? `${(v * 1000).toFixed(1)} ms` : "–"; }

  function renderLatency() {
    const rows = HOPS.map(([name], i) => [name, pct(state.latency[i], 0.5), pct(state.latency[i], 0.99)]);
    const worst = Math.max(...rows.map((r) => r[2]).filter(Number.isFinite), 0.001);
    $("latency").tBodies[0].innerHTML = rows.map(([name, p50, p99]) =>
      `<tr><td>${name}</td><td>${ms(p50)}</td><td>${ms(p99)}</td>` +
      `<td class="bar"><i style="width:${Number.isFinite(p99) ? Math.max(1, (100 * p99) / worst) : 0}%"></i></td></tr>`
    ).join("");
  }

  function renderFeed() {
    const feed = $("feed");
    feed.replaceChildren(...state.feed.map((p) => {
      const li = document.createElement("li");
      li.innerHTML = "<time></time><span class=dev></span><span class=label></span><span class=score></span>";
      li.querySelector("time").textContent = new Date(p.hops.device_ts * 1000).toLocaleTimeString();
      li.querySelector(".dev").textContent = p.device_id;
      li.querySelector(".label").textContent = p.label || "anomaly";
      li.querySelector(".score").textContent = `score ${p.score.toFixed(3)} · seq ${p.seq}`;
      return li;
    }));
  }

  // Heartbeats come only after the gateway's GATEWAY_HEARTBEAT_S of silence, which the page
  // does not know: it pings when quiet, so any healthy gateway answers within PING_EVERY.
  function checkLiveness(now) {
    if (!state.connected || state.lastFrameAt === null) return;
    const quiet = now - state.lastFrameAt;
    const every = Math.min(PING_EVERY, state.staleAfter / 3);
    if (quiet >= every && now - lastPing >= every && socket.readyState === 1) {
      socket.send(JSON.stringify({ type: "ping" }));
      lastPing = now;
    }
    const stale = quiet >= state.staleAfter;
    if (stale && !state.stale) state.staleSpells++;
    if (stale) setStatus("stale", `stale: nothing for ${Math.floor(quiet)} s`);
    else if (state.stale) setStatus("open", "live");
    state.stale = stale;
  }

  function render() {
    const now = Date.now() / 1000;
    checkLiveness(now);
    while (state.arrivals.length && state.arrivals[0] < now - 5) state.arrivals.shift();
    $("stat-rate").textContent = (state.arrivals.length / 5).toFixed(0);
    $("stat-last-id").textContent = state.lastId || "–";
    if (dirty) {
      dirty = false;
      renderFleet(); renderChart(); renderLatency(); renderFeed();
    }
  }

  setInterval(render, 250);
  connect();
})();
