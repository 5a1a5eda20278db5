// Time-series charts as inline SVG: lines (gaps where a bucket is empty) or bars. No library.
import { fmtNum, state } from "./core.js";

const NS = "http://www.w3.org/2000/svg";
const W = 640, H = 220, PAD = { l: 54, r: 12, t: 12, b: 28 };

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  el.append(...kids.filter((k) => k != null));
  return el;
}

/** A nice upper bound and step for the y axis. */
function scale(max) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / 4, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((x) => x >= raw);
  return { top: step * Math.ceil(max / step), step };
}

/**
 * series: [{name, color, values: (number|null)[]}] over `times` (bucket starts, ms), from `start` to `end`.
 * kind: "line" | "bar"; unit: appended to values in tooltips.
 */
export function chart({ title, times, series, start, end, kind = "line", unit = "", max }) {
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const all = series.flatMap((x) => x.values).filter((v) => v != null);
  const { top, step } = scale(max ?? Math.max(0, ...all));
  const x = (tm) => PAD.l + ((tm - start) / Math.max(1, end - start)) * iw;
  const y = (v) => PAD.t + ih - (v / top) * ih;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart", "aria-label": title, preserveAspectRatio: "xMidYMid meet" },
    s("title", {}, title));
  const grid = s("g", { class: "grid-lines" }), data = s("g", { class: "data" });
  svg.append(grid, data);
  for (let v = 0; v <= top + step / 2; v += step) {
    grid.append(s("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, fmtNum(v, step < 1 ? 2 : 0)));
  }
  const span = end - start, day = 864e5;
  const fmt = new Intl.DateTimeFormat(state.lang, span > 2 * day ? { day: "numeric", month: "short" } : { hour: "2-digit", minute: "2-digit" });
  for (let i = 0; i <= 4; i++) {
    const tm = start + (span * i) / 4;
    grid.append(s("text", { x: x(tm), y: H - 8, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "axis" }, fmt.format(new Date(tm))));
  }
  const slot = iw / Math.max(1, times.length);
  const tipFmt = new Intl.DateTimeFormat(state.lang, { dateStyle: "short", timeStyle: "short" });
  series.forEach((line, n) => {
    if (kind === "bar") {
      const width = Math.max(1, (slot * 0.8) / series.length);
      line.values.forEach((v, i) => {
        if (!v) return;
        const left = x(times[i]) + n * width;
        data.append(s("rect", { x: left, y: y(v), width, height: PAD.t + ih - y(v), fill: line.color },
          s("title", {}, `${line.name}: ${fmtNum(v, 2)}${unit} · ${tipFmt.format(new Date(times[i]))}`)));
      });
      return;
    }
    let d = "", pen = false;
    line.values.forEach((v, i) => {
      if (v == null) { pen = false; return; }
      const cx = x(times[i] + (times[1] - times[0] || 0) / 2), cy = y(v);
      d += `${pen ? "L" : "M"}${cx.toFixed(1)},${cy.toFixed(1)}`;
      pen = true;
      data.append(s("circle", { cx, cy, r: 3, fill: line.color },
        s("title", {}, `${line.name}: ${fmtNum(v, 2)}${unit} · ${tipFmt.format(new Date(times[i]))}`)));
    });
    if (d) data.prepend(s("path", { d, fill: "none", stroke: line.color, "stroke-width": 2 }));
  });
  return svg;
}
