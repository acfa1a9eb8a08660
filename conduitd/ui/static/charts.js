// Inline SVG charts: a sparkline for the list, a line chart with axes for the pipeline page.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function scale(values, lo, hi) {
  const max = Math.max(...values, 0);
  return (v) => (max > 0 ? hi - (v / max) * (hi - lo) : hi);
}

/** A small line of `values` (oldest first), labelled for screen readers. */
export function sparkline(values, { width = 120, height = 28, label = "" } = {}) {
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", class: "sparkline",
    "aria-label": label });
  chart.append(svg("title", {}, label));
  if (values.length < 2) return chart;
  const y = scale(values, 2, height - 2);
  const step = width / (values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${y(v).toFixed(1)}`);
  chart.append(svg("polygon", { points: `0,${height} ${points.join(" ")} ${width},${height}`, class: "area" }));
  chart.append(svg("polyline", { points: points.join(" "), class: "line" }));
  return chart;
}

/** A line chart of points [{at: Date, value}] with the max on the y axis and the time span below. */
export function lineChart(points, { width = 560, height = 180, label = "", unit = "" } = {}) {
  const pad = { left: 56, right: 8, top: 10, bottom: 24 };
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", "aria-label": label });
  chart.append(svg("title", {}, label));
  const inner = { x0: pad.left, x1: width - pad.right, y0: pad.top, y1: height - pad.bottom };
  chart.append(svg("line", { x1: inner.x0, y1: inner.y1, x2: inner.x1, y2: inner.y1, class: "axis" }));
  chart.append(svg("line", { x1: inner.x0, y1: inner.y0, x2: inner.x0, y2: inner.y1, class: "axis" }));
  if (points.length === 0) {
    chart.append(svg("text", { x: (inner.x0 + inner.x1) / 2, y: (inner.y0 + inner.y1) / 2, class: "empty",
      "text-anchor": "middle" }, "no data yet"));
    return chart;
  }
  const values = points.map((p) => p.value);
  const max = Math.max(...values, 0);
  const t0 = points[0].at.getTime();
  const t1 = Math.max(points[points.length - 1].at.getTime(), t0 + 1);
  const x = (at) => inner.x0 + ((at.getTime() - t0) / (t1 - t0)) * (inner.x1 - inner.x0);
  const y = scale(values, inner.y0, inner.y1);
  const fmt = (v) => v.toLocaleString("en", { maximumFractionDigits: v < 10 ? 2 : 0 });
  chart.append(svg("text", { x: inner.x0 - 4, y: inner.y0 + 8, "text-anchor": "end", class: "tick" },
    `${fmt(max)}${unit ? ` ${unit}` : ""}`));
  chart.append(svg("text", { x: inner.x0 - 4, y: inner.y1, "text-anchor": "end", class: "tick" }, "0"));
  const clock = (d) => d.toISOString().slice(11, 19);
  chart.append(svg("text", { x: inner.x0, y: height - 6, class: "tick" }, clock(points[0].at)));
  chart.append(svg("text", { x: inner.x1, y: height - 6, "text-anchor": "end", class: "tick" },
    `${clock(points[points.length - 1].at)} UTC`));
  const line = points.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  chart.append(svg("polyline", { points: line, class: "line" }));
  return chart;
}
