// Small SVG line charts for the console: a time axis over the last minutes, one polyline per
// series, no library.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 160, LEFT = 44, RIGHT = 8, TOP = 8, BOTTOM = 18;
  const COLORS = ["#2f6fd6", "#d67d2f", "#c0392b", "#2a9d5c"];

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // series: [{name, points: [[t_ms, value], ...]}]; spanMs: the width of the time axis.
  function draw(svg, series, nowMs, spanMs) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    let max = 0;
    for (const s of series) for (const [, v] of s.points) if (Number.isFinite(v)) max = Math.max(max, v);
    max = niceMax(max);
    const x = t => LEFT + (W - LEFT - RIGHT) * (1 - (nowMs - t) / spanMs);
    const y = v => TOP + (H - TOP - BOTTOM) * (1 - v / max);
    for (let i = 0; i <= 4; i++) {
      const v = max * i / 4;
      svg.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid"}));
      svg.appendChild(el("text", {x: LEFT - 4, y: y(v) + 3, "text-anchor": "end"},
                         v >= 100 ? v.toFixed(0) : +v.toPrecision(3)));
    }
    for (let m = 0; m * 60000 <= spanMs; m++) {
      svg.appendChild(el("text", {x: x(nowMs - m * 60000), y: H - 4, "text-anchor": "middle"},
                         m === 0 ? "now" : `-${m} min`));
    }
    svg.appendChild(el("line", {x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM, class: "axis"}));
    series.forEach((s, i) => {
      const pts = s.points.filter(([t, v]) => nowMs - t <= spanMs && Number.isFinite(v))
                          .map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
      const color = COLORS[i % COLORS.length];
      if (pts.length > 0) svg.appendChild(el("polyline", {points: pts.join(" "), stroke: color}));
      svg.appendChild(el("text", {x: LEFT + 8 + i * 60, y: TOP + 10, fill: color}, s.name));
    });
  }

  return {draw};
})();
