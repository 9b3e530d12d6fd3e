// edgecl dashboard: how figures are written. Loaded first.
"use strict";

window.edgeclFormat = (function () {
  const none = (v) => v === null || v === undefined;
  const UNITS = ["B", "KiB", "MiB", "GiB"];
  function scale(v) {
    let i = 0;
    while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return [v, i];
  }
  return {
    pct: (v) => (none(v) ? "–" : (v * 100).toFixed(1) + "%"),
    num: (v) => (none(v) ? "–" : Number(v).toLocaleString("en-US")),
    bytes(v) {
      if (none(v)) return "–";
      const [x, i] = scale(v);
      return (i === 0 ? x.toFixed(0) : x.toFixed(1)) + " " + UNITS[i];
    },
    // Axis ticks: as short as the value allows ("512 MiB", "1.5 MiB").
    bytesShort(v) {
      if (none(v)) return "";
      const [x, i] = scale(v);
      return (i === 0 || Math.abs(x) >= 10 || Number.isInteger(x) ? x.toFixed(0) : x.toFixed(1)) + " " + UNITS[i];
    },
    ms: (v) => (none(v) ? "–" : (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " ms"),
    rate: (v) => (none(v) ? "–" : v.toFixed(1) + "/s"),
    age: (s) => (none(s) ? "not scored yet"
      : s < 90 ? "scored " + Math.round(s) + " s ago" : "scored " + Math.round(s / 60) + " min ago"),
    duration(s) {
      s = Math.floor(s);
      const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
      const m = Math.floor((s % 3600) / 60), sec = s % 60;
      if (d) return d + "d " + h + "h";
      if (h) return h + "h " + m + "m";
      if (m) return m + "m " + sec + "s";
      return sec + "s";
    },
  };
})();
