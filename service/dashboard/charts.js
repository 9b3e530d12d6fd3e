// edgecl dashboard: the charts (uPlot), sized to their panels. Loaded before app.js.
"use strict";

window.edgeclCharts = (function () {
  const PALETTE = ["#4fa3ff", "#3ecf8e", "#b48cff", "#5ad1e6", "#ff8fb1",
    "#a3d977", "#ffb36b", "#8fa8ff", "#e6d45a", "#7fd1b9"];
  const HEIGHT = 220;
  const AXIS = { stroke: "#8a97a6", font: "12px system-ui, sans-serif",
    grid: { stroke: "#26303b", width: 1 }, ticks: { stroke: "#26303b", width: 1, size: 6 }, gap: 4 };
  const charts = {};
  const f = window.edgeclFormat;
  // Byte axes tick at round binary sizes (0, 4 MiB, 8 MiB, ...), not at 19.1 MiB.
  const BYTE_INCRS = [];
  for (const unit of [1, 1024, 1024 ** 2, 1024 ** 3]) {
    for (const m of [1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256, 500, 512]) {
      BYTE_INCRS.push(m * unit);
    }
  }

  // Wide enough for the longest tick label: a fixed size clipped "512.0 MiB".
  function axisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    let size = axis.ticks.size + axis.gap + 8;
    const longest = (values || []).reduce((a, v) => (String(v).length > a.length ? String(v) : a), "");
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / devicePixelRatio;
    }
    return Math.ceil(size);
  }

  const widthOf = (host) => Math.max(Math.floor(host.clientWidth), 120);

  // yAxes: [{scale, format, range?}], the first on the left, a second on the right.
  // Lines break where a point lacks the figure: a restart (the sampler adds an empty point
  // there), an interval without requests, the probe before it measures.
  function chart(id, series, data, yAxes) {
    const host = document.getElementById(id);
    const key = series.map((s) => s.label).join("\u0000");
    let c = charts[id];
    if (c && c.key === key) {
      c.plot.setData(data);
    } else {
      if (c) c.plot.destroy();
      host.textContent = "";
      const opts = {
        width: widthOf(host), height: HEIGHT,
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        scales: { x: { time: true } },
        series: [{}, ...series.map((s) => Object.assign({ spanGaps: false, points: { show: false },
          scale: yAxes[0].scale }, s))],
        axes: [Object.assign({}, AXIS, { size: 44 })],
      };
      yAxes.forEach((a, i) => {
        opts.scales[a.scale] = a.range ? { range: a.range } : { auto: true };
        opts.axes.push(Object.assign({}, AXIS, {
          scale: a.scale, size: axisSize, side: i === 0 ? 3 : 1, values: (u, vals) => vals.map(a.format),
        }, a.incrs ? { incrs: a.incrs } : {}, i === 0 ? {} : { grid: { show: false } }));
      });
      c = charts[id] = { key, plot: new uPlot(opts, data, host) };
      watcher.observe(host);
    }
    // The legend shows the newest point until the pointer picks another.
    if (c.plot.cursor.left < 0 && data[0].length) c.plot.setLegend({ idx: data[0].length - 1 });
    const left = c.plot.scales[yAxes[0].scale];
    host.dataset.scale = yAxes[0].scale;
    host.dataset.ymax = String(left.max);
    host.dataset.series = series.map((s) => s.label).join("|");
  }

  function empty(id, text) {
    if (charts[id]) {
      charts[id].plot.destroy();
      delete charts[id];
    }
    const host = document.getElementById(id);
    host.replaceChildren(Object.assign(document.createElement("div"), { className: "empty", textContent: text }));
    host.dataset.series = "";
  }

  // Charts follow their panel's width (window resized, phone turned, layout changed).
  const watcher = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const c = charts[entry.target.id];
      const width = widthOf(entry.target);
      // Next frame: resizing inside the callback would notify the observer again.
      if (c && c.plot.width !== width) requestAnimationFrame(() => c.plot.setSize({ width, height: HEIGHT }));
    }
  });

  const scaled = (xs, k) => (xs || []).map((v) => (v === null || v === undefined ? null : v * k));

  function draw(series) {
    const t = series.t, v = series.values, n = t.length;
    const col = (name, k) => (v[name] ? scaled(v[name], k || 1) : new Array(n).fill(null));
    const b = (u, x) => f.bytes(x);

    // Process memory on its own: hundreds of MiB, never compared with the store's budget.
    chart("chart-rss", [
      { label: "resident (RSS)", stroke: PALETTE[0], width: 2, fill: "rgba(79,163,255,0.08)", value: b },
    ], [t, col("rss_bytes")],
    [{ scale: "rss", format: f.bytesShort, incrs: BYTE_INCRS, range: (u, lo, hi) => [0, (hi || 1) * 1.15] }]);

    // The replay store against its budget; the right axis is the same range in % of it.
    const budget = Math.max(...col("store_max_bytes").filter((x) => x !== null), 0);
    if (budget > 0) {
      const fill = col("store_bytes").map((x, i) => {
        const max = v.store_max_bytes[i];
        return x === null || !max ? null : (100 * x) / max;
      });
      chart("chart-store", [
        { label: "store", stroke: PALETTE[1], width: 2, fill: "rgba(62,207,142,0.12)", value: b },
        { label: "budget", stroke: "#f0616d", width: 1.5, dash: [6, 4], value: b },
        { label: "fill", stroke: "transparent", width: 0, scale: "pct",
          value: (u, x) => (x === null || x === undefined ? "–" : x.toFixed(1) + "%") },
      ], [t, col("store_bytes"), col("store_max_bytes"), fill],
      [{ scale: "store", format: f.bytesShort, incrs: BYTE_INCRS, range: () => [0, budget * 1.1] },
        { scale: "pct", format: (x) => x.toFixed(0) + "%", range: () => [0, 110] }]);
    } else {
      empty("chart-store", "no replay store (store kind none)");
    }

    const pct = (u, x) => f.pct(x);
    const classes = Object.keys(series.classes);
    chart("chart-accuracy", [
      { label: "prequential", stroke: "#4fa3ff", width: 2.5, value: pct },
      { label: "window", stroke: "#9ccaff", width: 1.5, dash: [6, 4], value: pct },
      { label: "probe (all classes)", stroke: "#f2b84b", width: 2.5, value: pct },
      ...classes.map((c, i) => ({ label: c, stroke: PALETTE[(i + 1) % PALETTE.length] + "99",
        width: 1, value: pct })),
    ], [t, col("accuracy"), col("window_accuracy"), col("probe_accuracy"),
      ...classes.map((c) => series.classes[c])],
    [{ scale: "ratio", format: (x) => (x * 100).toFixed(0) + "%", range: [0, 1] }]);

    const ms = (u, x) => f.ms(x);
    // Dots: an interval with requests between two without has no line to draw.
    const perInterval = { points: { show: true, size: 4 }, value: ms };
    chart("chart-latency", [
      Object.assign({ label: "/predict p50", stroke: PALETTE[0], width: 2 }, perInterval),
      Object.assign({ label: "/predict p95", stroke: "#9ccaff", width: 1.5, dash: [6, 4] }, perInterval),
      Object.assign({ label: "/learn p50", stroke: PALETTE[1], width: 2 }, perInterval),
      Object.assign({ label: "/learn p95", stroke: "#a3e8c6", width: 1.5, dash: [6, 4] }, perInterval),
      Object.assign({ label: "predict: head only", stroke: "#8a97a6", width: 1, dash: [2, 3] }, perInterval),
    ], [t, col("predict_http_p50_s", 1000), col("predict_http_p95_s", 1000),
      col("learn_http_p50_s", 1000), col("learn_http_p95_s", 1000), col("predict_latency_s", 1000)],
    [{ scale: "ms", format: (x) => x.toFixed(x < 10 ? 1 : 0) + " ms",
      range: (u, lo, hi) => [0, Math.max(hi || 0, 1) * 1.1] }]);

    chart("chart-throughput", [
      { label: "learned", stroke: PALETTE[1], width: 2, value: (u, x) => f.rate(x) },
      { label: "predicted", stroke: PALETTE[0], width: 2, value: (u, x) => f.rate(x) },
    ], [t, col("learn_rate"), col("predict_rate")],
    [{ scale: "rate", format: (x) => x.toFixed(x < 10 ? 1 : 0),
      range: (u, lo, hi) => [0, Math.max(hi || 0, 1) * 1.1] }]);
  }

  const IDS = ["chart-rss", "chart-store", "chart-accuracy", "chart-latency", "chart-throughput"];
  return { draw, empty, IDS };
})();
