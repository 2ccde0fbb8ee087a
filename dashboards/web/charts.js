// The dashboard's own small SVG charts: a time-series line chart, a
// sparkline, gauges, share bars and a status timeline. Colours come from
// CSS classes, so the stylesheet decides the look.

import { h, s } from "./dom.js";
import { clock } from "./format.js";

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

// A line chart over time. `series`: [{ name, className, points: [[unixSeconds, value]] }].
// Points are joined in time order; a gap longer than `gap` seconds breaks the line.
export function lineChart({ series, width = 560, height = 160, format = String, gap = Infinity, label = "" }) {
  const pad = { left: 56, right: 10, top: 10, bottom: 22 };
  const all = series.flatMap((one) => one.points);
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
  });
  if (all.length === 0) {
    svg.append(s("text", { x: width / 2, y: height / 2, class: "chart-empty", "text-anchor": "middle" }, "no data yet"));
    return svg;
  }
  let t0 = Math.min(...all.map((p) => p[0]));
  let t1 = Math.max(...all.map((p) => p[0]));
  if (t1 === t0) {
    t0 -= 30;
    t1 += 30;
  }
  const yMax = niceMax(Math.max(...all.map((p) => p[1])));
  const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / yMax) * (height - pad.top - pad.bottom);
  for (const fraction of [0, 0.5, 1]) {
    const v = yMax * fraction;
    svg.append(
      s("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }),
      s("text", { class: "axis", x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)),
    );
  }
  svg.append(
    s("text", { class: "axis", x: pad.left, y: height - 6 }, clock(t0)),
    s("text", { class: "axis", x: width - pad.right, y: height - 6, "text-anchor": "end" }, clock(t1)),
  );
  for (const one of series) {
    const points = [...one.points].sort((a, b) => a[0] - b[0]);
    let d = "";
    let previous = null;
    for (const [t, v] of points) {
      const move = previous === null || t - previous > gap;
      d += `${move ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      previous = t;
    }
    const group = s("g", { class: `series ${one.className || ""}` }, s("path", { d }));
    for (const [t, v] of points) {
      group.append(
        s("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: points.length > 60 ? 1.5 : 2.5 },
          s("title", null, `${one.name} ${clock(t)}: ${format(v)}`)),
      );
    }
    svg.append(group);
  }
  return svg;
}

// A legend for a line chart.
export function legend(series) {
  return h("div", { class: "legend" }, series.map((one) => h("span", { class: `key ${one.className || ""}` }, one.name)));
}

// A tiny line of values, for a table cell.
export function sparkline(values, { width = 120, height = 24, className = "" } = {}) {
  const svg = s("svg", { class: `spark ${className}`, viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true" });
  if (values.length === 0) return svg;
  const max = Math.max(...values) || 1;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const d = values
    .map((v, i) => `${i === 0 ? "M" : "L"}${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`)
    .join("");
  svg.append(s("path", { d: values.length > 1 ? d : `M0,${height / 2}L${width},${height / 2}` }));
  return svg;
}

// A horizontal gauge for a 0–1 utilisation: ok, warn and hot by thresholds.
export function gauge(label, ratio, { warn = 0.8, fail = 0.9, detail = "" } = {}) {
  const clamped = Math.max(0, Math.min(1, ratio));
  const level = ratio >= fail ? "hot" : ratio >= warn ? "warn" : "ok";
  return h(
    "div",
    { class: `gauge ${level}`, dataset: { gauge: label, value: String(ratio) } },
    h("span", { class: "gauge-label" }, label),
    h("span", { class: "gauge-track" }, h("span", { class: "gauge-fill", style: { width: `${(clamped * 100).toFixed(1)}%` } })),
    h("span", { class: "gauge-value" }, `${(ratio * 100).toFixed(1)} %`),
    detail ? h("span", { class: "gauge-detail" }, detail) : null,
  );
}

// Good / needs-improvement / poor shares as one stacked bar.
export function shareBar(good, needsImprovement, poor) {
  const part = (className, share, name) =>
    share > 0
      ? h("span", { class: `share ${className}`, style: { width: `${(share * 100).toFixed(2)}%` }, title: `${name} ${(share * 100).toFixed(1)} %` })
      : null;
  return h(
    "span",
    { class: "shares", role: "img", "aria-label": `good ${(good * 100).toFixed(0)} %, needs improvement ${(needsImprovement * 100).toFixed(0)} %, poor ${(poor * 100).toFixed(0)} %` },
    part("good", good, "good"),
    part("ni", needsImprovement, "needs improvement"),
    part("poor", poor, "poor"),
  );
}

// Each row's status over time as coloured segments. `rows`: [{ name,
// segments: [{ from, to, status }] }] in Unix seconds.
export function timeline(rows, from, to, { width = 760 } = {}) {
  const rowHeight = 22;
  const left = 130;
  const height = rows.length * rowHeight + 22;
  const svg = s("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "status timeline" });
  const span = Math.max(1, to - from);
  const x = (t) => left + ((t - from) / span) * (width - left - 8);
  rows.forEach((row, i) => {
    const y = i * rowHeight;
    svg.append(s("text", { class: "axis", x: left - 8, y: y + 15, "text-anchor": "end" }, row.name));
    for (const segment of row.segments) {
      const x0 = x(Math.max(from, segment.from));
      const x1 = x(Math.min(to, segment.to));
      svg.append(
        s("rect", { class: `status-${segment.status}`, x: x0.toFixed(1), y: y + 3, width: Math.max(1, x1 - x0).toFixed(1), height: rowHeight - 6 },
          s("title", null, `${row.name}: ${segment.status} from ${clock(segment.from)}`)),
      );
    }
  });
  svg.append(
    s("text", { class: "axis", x: left, y: height - 4 }, clock(from)),
    s("text", { class: "axis", x: width - 8, y: height - 4, "text-anchor": "end" }, clock(to)),
  );
  return svg;
}
