// edgecl dashboard: polls dashboard/data and draws it (charts.js, with the vendored uPlot).
// No build step.
"use strict";

(function () {
  const MAX_ROWS = 200;
  let period = 5000;
  let renders = 0;

  const f = window.edgeclFormat, charts = window.edgeclCharts;
  const { pct, num, bytes, ms } = f;

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

  // The newest interval that had requests on a route: [p50, p95] in ms, and its age.
  function lastLatency(series, name) {
    const p50 = series.values[name + "_http_p50_s"] || [], p95 = series.values[name + "_http_p95_s"] || [];
    for (let i = p50.length - 1; i >= 0; i--) {
      if (p50[i] !== null) return { p50: p50[i] * 1000, p95: p95[i] * 1000, t: series.t[i] };
    }
    return null;
  }

  const fill = (used, max) => (!max ? "–" : used && used < max / 1000 ? "<0.1%" : pct(used / max));

  function drawKpis(s, series, now) {
    const p = s.probe, pq = s.prequential;
    const measured = p && p.status === "ok";
    const box = document.getElementById("kpis");
    // The probe leads: held-back samples scored over all classes show forgetting;
    // prequential scores each sample just before learning it and cannot. While the probe
    // cannot measure, it says why (the sentence /stats gives) instead of a figure.
    const probeSub = !p ? "probe off: EDGECL_PROBE_SHARE is 0, nothing is held back to measure"
      : !measured ? (p.reason || p.status)
      : "±" + pct(p.margin) + " · " + num(p.held) + " held · " + f.age(p.age_s);
    const forgetSub = !p ? "needs the probe (EDGECL_PROBE_SHARE > 0)"
      : !measured ? "best minus now per class, once the probe measures: it needs "
        + num(p.min_items) + " held items of 2 classes, holds " + num(p.held)
      : p.forgetting === null ? "waits for the probe's first score"
      : "best so far minus now · worst class " + pct(p.max_forgetting);
    const probe = kpi("Accuracy (probe)", measured ? pct(p.accuracy) : "–", probeSub,
      toneAcc(measured ? p.accuracy : null), "kpi-probe");
    probe.querySelector(".sub").id = "probe-reason";
    const forget = kpi("Forgetting", measured ? pct(p.forgetting) : "–", forgetSub,
      toneDrop(measured ? p.forgetting : null), "kpi-forgetting");
    const pre = kpi("Prequential (before learning)", pct(pq.seen ? pq.accuracy : null),
      "window " + pct(pq.seen ? pq.window_accuracy : null) + " of last " + num(pq.window),
      toneAcc(pq.seen ? pq.accuracy : null), "kpi-prequential");
    pre.append(el("div", { class: "note", id: "prequential-note",
      title: "The head cannot name a class it has not learned: a new class's first sample, "
        + "and any others of it in the same batch, are scored before it is learned." },
    "each new class's first sample counts as a miss"));
    const lat = lastLatency(series, "predict");
    const latency = kpi("Predict latency (HTTP)", lat ? ms(lat.p50) : "–",
      lat ? "p50; p95 " + ms(lat.p95) + " · " + Math.max(Math.round(now - lat.t), 0) + " s ago"
        : "no /predict request in the history yet", "", "kpi-latency");
    const latValue = latency.querySelector(".value");
    latValue.id = "predict-latency";
    if (lat) latValue.dataset.ms = String(lat.p50);
    box.replaceChildren(
      probe, forget, pre,
      kpi("Samples learned", num(s.samples_learned),
        (p ? num(p.diverted) + " held back · " : "") + num(s.events.duplicates || 0) + " duplicates"),
      kpi("Classes", num(Object.keys(s.classes).length), "model v" + num(s.model_version)),
      latency,
      kpi("Process RSS", bytes(s.rss_bytes), "resident memory of the daemon"),
      kpi("Replay store", s.store.kind ? bytes(s.store.bytes) : "–",
        (s.store.kind ? fill(s.store.bytes, s.store.max_bytes) + " of its " + bytes(s.store.max_bytes)
          + " budget · " + num(s.store.items) + " items" : "no store")
          + (s.store.strategy_bytes != null ? " · the strategy holds " + bytes(s.store.strategy_bytes)
            + " of its own" : ""), "", "kpi-store"),
      kpi("Queue", num(s.queue.depth) + " / " + num(s.queue.capacity),
        num(s.events.queue_full || 0) + " turned away (full)"),
    );
  }

  function drawClasses(s) {
    const probe = s.probe ? s.probe.classes : {};
    // Per-class probe figures only once the probe measures: until then the probe tile says
    // why it cannot, and a class's few held items would give a figure that means little.
    const measured = s.probe && s.probe.status === "ok";
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
      el("td", { class: "num", id: "probe-accuracy-" + label },
        pc && measured ? pct(pc.accuracy) : "–"),
      el("td", { class: "num " + (drop > 0.1 ? "forgot" : "kept") },
        measured ? pct(drop) : "–"));
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

  // Shown once a sample came with a task, or the strategy learns per task.
  function drawTasks(s) {
    const panel = document.getElementById("tasks-panel");
    panel.hidden = !s.tasks;
    if (!s.tasks) return;
    const rows = s.tasks.tasks.map((t) => el("tr", { "data-task": t.name },
      el("td", { class: "label", title: t.name }, t.name),
      el("td", { class: "num" }, num(t.samples)),
      el("td", { class: "label", title: t.classes.join(", ") }, t.classes.join(", ")),
      el("td", { class: "num" }, t.bytes === null ? "–" : bytes(t.bytes))));
    if (!rows.length) {
      rows.push(el("tr", { class: "empty" }, el("td", { colspan: "4" },
        "No tasks yet: give each sample a task (the field task).")));
    }
    document.getElementById("tasks-body").replaceChildren(...rows);
    document.getElementById("tasks-note").textContent = s.tasks.mode
      ? "the strategy learns per task (task " + s.tasks.mode + ")"
      : "counted only: the strategy ignores tasks";
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

  // The fleet (README "Fleet"): the last round applied here, and the classes other devices taught.
  function fleetInfo(fl) {
    if (!fl) return [];
    const text = fl.last_round === null ? "no round yet"
      : "round " + fl.last_round + ", " + fl.from_elsewhere.length + " classes from elsewhere";
    const title = fl.from_elsewhere.length ? "from elsewhere: " + fl.from_elsewhere.join(", ") : fl.server;
    return [" · fleet ", el("b", { id: "fleet", title: title }, text)];
  }

  function render(d) {
    const s = d.stats;
    const head = document.getElementById("headline");
    head.replaceChildren("strategy ", el("b", {}, s.strategy.name), " · store ",
      el("b", {}, s.store.kind || "none"), " · model ", el("b", {}, "v" + s.model_version),
      " · up ", el("b", {}, f.duration(s.uptime_s)), ...backboneCheck(s.backbone_check),
      ...fleetInfo(s.fleet));
    drawKpis(s, d.series, d.time);
    drawClasses(s);
    drawTasks(s);
    drawConfusions(s);
    drawSettings(d.settings);
    if (d.series.t.length) charts.draw(d.series);
    else for (const id of charts.IDS) charts.empty(id, "waiting for data…");
    period = Math.min(Math.max(d.interval_s, 1), 10) * 1000;
    renders += 1;
    const root = document.documentElement;
    root.dataset.renders = String(renders);
    root.dataset.points = String(d.series.t.length);
    root.dataset.firstT = d.series.t.length ? String(d.series.t[0]) : "";
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
