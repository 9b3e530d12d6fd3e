// edgecl dashboard: polls dashboard/data and draws it with the vendored uPlot. No build step.
"use strict";

(function () {
  const PALETTE = ["#4fa3ff", "#3ecf8e", "#b48cff", "#5ad1e6", "#ff8fb1",
    "#a3d977", "#ffb36b", "#8fa8ff", "#e6d45a", "#7fd1b9"];
  const AXIS = { stroke: "#8a97a6", grid: { stroke: "#26303b", width: 1 },
    ticks: { stroke: "#26303b", width: 1 } };
  const MAX_ROWS = 200;
  const charts = {};
  let period = 5000;
  let renders = 0;

  // -- formatting ---------------------------------------------------------------------
  const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%");
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
  const age = (s) => (s === null || s === undefined ? "not scored yet"
    : s < 90 ? "scored " + Math.round(s) + " s ago" : "scored " + Math.round(s / 60) + " min ago");
  function bytes(v) {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }
  function duration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + sec + "s";
    return sec + "s";
  }
  const ms = (v) => (v === null || v === undefined ? "–" : (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " ms");
  const rate = (v) => (v === null || v === undefined ? "–" : v.toFixed(1) + "/s");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // -- token --------------------------------------------------------------------------
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem("edgecl-token", hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  function headers() {
    const token = sessionStorage.getItem("edgecl-token");
    return token ? { Authorization: "Bearer " + token } : {};
  }
  const form = document.getElementById("token-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("edgecl-token", document.getElementById("token-input").value);
    form.hidden = true;
    tick();
  });

  // -- charts -------------------------------------------------------------------------
  // yAxes: [{scale, format, range?}] — the first on the left, a second on the right.
  function chart(id, series, data, yAxes) {
    const host = document.getElementById(id);
    const key = series.map((s) => s.label).join("\u0000");
    const width = Math.max(host.clientWidth, 300);
    if (charts[id] && charts[id].key === key) {
      charts[id].plot.setData(data);
      return;
    }
    if (charts[id]) charts[id].plot.destroy();
    host.textContent = "";
    const opts = {
      width, height: 240,
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      series: [{}, ...series.map((s) => Object.assign({ spanGaps: true, points: { show: false },
        scale: yAxes[0].scale }, s))],
      axes: [Object.assign({}, AXIS)],
    };
    yAxes.forEach((a, i) => {
      opts.scales[a.scale] = a.range ? { range: a.range } : { auto: true };
      opts.axes.push(Object.assign({}, AXIS, {
        scale: a.scale, size: 72, side: i === 0 ? 3 : 1, values: (u, vals) => vals.map(a.format),
      }, i === 0 ? {} : { grid: { show: false } }));
    });
    charts[id] = { key, plot: new uPlot(opts, data, host) };
  }

  function resize() {
    for (const [id, c] of Object.entries(charts)) {
      const w = Math.max(document.getElementById(id).clientWidth, 300);
      c.plot.setSize({ width: w, height: 240 });
    }
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(resize, 150);
  });

  const scaled = (xs, k) => (xs || []).map((v) => (v === null || v === undefined ? null : v * k));

  function drawCharts(series) {
    const t = series.t, v = series.values, n = t.length;
    const col = (name, k) => (v[name] ? scaled(v[name], k || 1) : new Array(n).fill(null));
    const b = (u, x) => bytes(x);
    chart("chart-memory", [
      { label: "RSS (left)", stroke: PALETTE[0], width: 2, value: b },
      { label: "store (right)", stroke: PALETTE[1], width: 2, fill: "rgba(62,207,142,0.10)",
        value: b, scale: "store" },
      { label: "store budget", stroke: "#f0616d", width: 1.5, dash: [6, 4], value: b, scale: "store" },
      { label: "probe", stroke: PALETTE[2], width: 1.5, value: b, scale: "store" },
    ], [t, col("rss_bytes"), col("store_bytes"), col("store_max_bytes"), col("probe_bytes")],
    // Both from zero; the budget line sits at 80% of the right axis, clear of the RSS line.
    [{ scale: "rss", format: bytes, range: (u, lo, hi) => [0, (hi || 1) * 1.1] },
      { scale: "store", format: bytes, range: (u, lo, hi) => [0, (hi || 1) * 1.25] }]);

    const classes = Object.keys(series.classes);
    chart("chart-accuracy", [
      { label: "prequential", stroke: "#4fa3ff", width: 2.5, value: (u, x) => pct(x) },
      { label: "window", stroke: "#9ccaff", width: 1.5, dash: [6, 4], value: (u, x) => pct(x) },
      { label: "probe (all classes)", stroke: "#f2b84b", width: 2.5, value: (u, x) => pct(x) },
      ...classes.map((c, i) => ({ label: c, stroke: PALETTE[(i + 1) % PALETTE.length] + "99",
        width: 1, value: (u, x) => pct(x) })),
    ], [t, col("accuracy"), col("window_accuracy"), col("probe_accuracy"),
      ...classes.map((c) => series.classes[c])],
    [{ scale: "ratio", format: (x) => (x * 100).toFixed(0) + "%", range: [0, 1] }]);

    chart("chart-throughput", [
      { label: "learned", stroke: PALETTE[1], width: 2, value: (u, x) => rate(x) },
      { label: "predicted", stroke: PALETTE[0], width: 2, value: (u, x) => rate(x) },
    ], [t, col("learn_rate"), col("predict_rate")],
    [{ scale: "rate", format: (x) => x.toFixed(x < 10 ? 1 : 0) }]);

    chart("chart-latency", [
      { label: "learn (micro-batch)", stroke: PALETTE[1], width: 2, value: (u, x) => ms(x) },
      { label: "predict (head)", stroke: PALETTE[0], width: 2, value: (u, x) => ms(x) },
    ], [t, col("learn_latency_s", 1000), col("predict_latency_s", 1000)],
    [{ scale: "ms", format: (x) => x.toFixed(x < 10 ? 1 : 0) + " ms" }]);
  }

  // -- panels -------------------------------------------------------------------------
  function kpi(label, value, sub, tone, id) {
    const attrs = { class: "kpi" + (tone ? " " + tone : "") };
    if (id) attrs.id = id;
    return el("div", attrs,
      el("div", { class: "label" }, label), el("div", { class: "value" }, value),
      el("div", { class: "sub" }, sub || "\u00a0"));
  }
  const toneAcc = (v) => (v === null ? "" : v >= 0.8 ? "good" : v >= 0.5 ? "warn" : "bad");
  const toneDrop = (v) => (v === null ? "" : v <= 0.1 ? "good" : v <= 0.3 ? "warn" : "bad");

  function drawKpis(s) {
    const p = s.probe, pq = s.prequential;
    const box = document.getElementById("kpis");
    // The probe leads: held-back samples scored over all classes show forgetting;
    // prequential scores each sample just before learning it and cannot.
    const probeSub = !p ? "probe off: set probe_share"
      : p.status !== "ok" ? (p.reason || p.status)
      : "±" + pct(p.margin) + " · " + num(p.held) + " held · " + age(p.age_s);
    box.replaceChildren(
      kpi("Accuracy (probe)", pct(p ? p.accuracy : null), probeSub,
        toneAcc(p ? p.accuracy : null), "kpi-probe"),
      kpi("Forgetting", pct(p ? p.forgetting : null),
        p && p.max_forgetting !== null ? "worst class " + pct(p.max_forgetting) : "best minus now",
        toneDrop(p ? p.forgetting : null)),
      kpi("Prequential (before learning)", pct(pq.seen ? pq.accuracy : null),
        "window " + pct(pq.seen ? pq.window_accuracy : null) + " of last " + num(pq.window),
        toneAcc(pq.seen ? pq.accuracy : null)),
      kpi("Samples learned", num(s.samples_learned),
        (p ? num(p.diverted) + " held back · " : "") + num(s.events.duplicates || 0) + " duplicates"),
      kpi("Classes", num(Object.keys(s.classes).length), "model v" + num(s.model_version)),
      kpi("Process RSS", bytes(s.rss_bytes), "resident memory"),
      kpi("Replay store", bytes(s.store.bytes),
        s.store.kind ? "of " + bytes(s.store.max_bytes) + " · " + num(s.store.items) + " items" : "no store"),
      kpi("Queue", num(s.queue.depth) + " / " + num(s.queue.capacity),
        num(s.events.queue_full || 0) + " turned away (full)"),
    );
  }

  function drawClasses(s) {
    const probe = s.probe ? s.probe.classes : {};
    const rows = Object.entries(s.classes).sort((a, b) => b[1].samples - a[1].samples);
    const body = document.getElementById("classes-body");
    const out = rows.slice(0, MAX_ROWS).map(([label, c]) => {
      const pc = probe[label] || null;
      const drop = pc ? pc.forgetting : null;
      return el("tr", { "data-class": label, "data-samples": String(c.samples),
        "data-accuracy": String(c.accuracy) },
      el("td", { class: "label", title: label }, label),
      el("td", { class: "num samples" }, num(c.samples)),
      el("td", {}, el("div", { class: "bar" },
        el("div", { class: "track" }, el("div", { class: "fill",
          style: "width:" + (c.accuracy * 100).toFixed(1) + "%" })),
        el("span", { class: "pct accuracy" }, pct(c.accuracy)))),
      el("td", { class: "num" }, pc ? num(pc.held) : "–"),
      el("td", { class: "num" }, pc ? pct(pc.accuracy) : "–"),
      el("td", { class: "num " + (drop > 0.1 ? "forgot" : "kept") }, pct(drop)));
    });
    if (!out.length) {
      out.push(el("tr", { class: "empty" }, el("td", { colspan: "6" },
        "No classes yet: POST /learn some labelled samples.")));
    }
    body.replaceChildren(...out);
    document.getElementById("classes-note").textContent = rows.length > MAX_ROWS
      ? "the " + MAX_ROWS + " with most samples of " + num(rows.length)
      : "learned samples and accuracy per class";
  }

  function drawConfusions(s) {
    const body = document.getElementById("confusions-body");
    const rows = s.confusions.map((c) => el("tr", {},
      el("td", { class: "label" }, c.true), el("td", { class: "arrow" }, "→"),
      el("td", { class: "label" }, c.predicted), el("td", { class: "num" }, num(c.count))));
    if (!rows.length) {
      rows.push(el("tr", { class: "empty" }, el("td", { colspan: "4" }, "No mistakes yet.")));
    }
    body.replaceChildren(...rows);
  }

  function drawSettings(settings) {
    const box = document.getElementById("settings");
    const items = [];
    for (const [k, v] of Object.entries(settings)) {
      let shown = v;
      if (k.endsWith("_bytes")) shown = bytes(v);
      else if (k === "probe_share") shown = pct(v);
      else if (Array.isArray(v)) shown = v.join(" × ");
      else if (v !== null && typeof v === "object") {
        shown = Object.entries(v).map(([a, x]) => a + "=" + (x === null ? "none" : x)).join(", ") || "defaults";
      }
      else if (v === null) shown = "none";
      items.push(el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, shown));
    }
    box.replaceChildren(...items);
  }

  // The int8 backbone's start-up self-check: which session serves, and how close to fp32.
  function backboneCheck(c) {
    if (!c) return [];
    const text = (c.passed ? "ok" : "FAILED") + ", " + c.session + ", cosine ≥ " + c.min_cosine.toFixed(3);
    const attrs = { id: "backbone-check", title: c.reason || "int8 latents agree with fp32 on the check photos" };
    if (!c.passed || c.session !== "optimized") attrs.class = "warn";
    return [" · backbone check ", el("b", attrs, text)];
  }

  function render(d) {
    const s = d.stats;
    const head = document.getElementById("headline");
    head.replaceChildren("strategy ", el("b", {}, s.strategy.name), " · store ",
      el("b", {}, s.store.kind || "none"), " · model ", el("b", {}, "v" + s.model_version),
      " · up ", el("b", {}, duration(s.uptime_s)), ...backboneCheck(s.backbone_check));
    drawKpis(s);
    drawClasses(s);
    drawConfusions(s);
    drawSettings(d.settings);
    if (d.series.t.length) drawCharts(d.series);
    else for (const id of ["chart-memory", "chart-accuracy", "chart-throughput", "chart-latency"]) {
      document.getElementById(id).replaceChildren(el("div", { class: "empty" }, "waiting for data…"));
    }
    period = Math.min(Math.max(d.interval_s, 1), 10) * 1000;
    renders += 1;
    const root = document.documentElement;
    root.dataset.renders = String(renders);
    root.dataset.points = String(d.series.t.length);
    if (d.series.t.length) root.dataset.state = "ready";
  }

  // -- polling ------------------------------------------------------------------------
  const banner = document.getElementById("banner");
  const dot = document.getElementById("status-dot");
  async function tick() {
    try {
      const r = await fetch("dashboard/data", { headers: headers(), cache: "no-store" });
      if (r.status === 401) {
        form.hidden = false;
        dot.className = "dot bad";
        return;
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
      banner.hidden = true;
      dot.className = "dot ok";
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      banner.textContent = "Cannot reach the daemon (" + err.message + "); retrying.";
      banner.hidden = false;
      dot.className = "dot bad";
    }
    setTimeout(tick, period);
  }
  tick();
})();
