// Spend over time (GET /api/spend by day), drawn with uPlot.

import { get, withQuery } from "../api.js";
import { h, fill, table } from "../dom.js";

/** Daily cost of the last 30 days, by day, and the top spenders by key. */
export async function spendChart(el, { usd, int }) {
  let byDay;
  let byKey;
  try {
    [byDay, byKey] = await Promise.all([
      get(withQuery("/api/spend", { interval: "day" })),
      get(withQuery("/api/spend", { group_by: "key" })),
    ]);
  } catch (e) {
    fill(el, h("p", { class: "hint" }, `Spend is not available: ${e.message}`));
    return;
  }
  const plot = h("div", { class: "chart", role: "img", "aria-label": "Cost per day over the last 30 days" });
  fill(el, h("h2", {}, "Spend, last 30 days"), plot, h("h2", {}, "Top keys"), keyTable(byKey, { usd, int }));
  draw(plot, byDay);
}

function keyTable(spend, { usd, int }) {
  const rows = (spend.rows || []).slice(0, 10);
  return table(
    [
      { label: "Key", value: (r) => (r.key && (r.key.name || r.key.id)) || "–" },
      { label: "Requests", num: true, value: (r) => int(r.sums.requests) },
      { label: "Cost", num: true, value: (r) => usd(r.sums.cost_usd) },
    ],
    rows,
    { empty: "No usage yet.", caption: "Top keys by cost" },
  );
}

function draw(el, spend) {
  const points = (spend.rows || [])
    .map((r) => [Date.parse(r.bucket) / 1000, r.sums.cost_usd || 0])
    .filter(([t]) => Number.isFinite(t))
    .sort((a, b) => a[0] - b[0]);
  if (!points.length || typeof uPlot === "undefined") {
    fill(el, h("p", { class: "empty" }, "No usage in this period."));
    return;
  }
  const width = Math.max(320, Math.min(1100, el.clientWidth || 900));
  // eslint-disable-next-line no-undef
  new uPlot(
    {
      width,
      height: 260,
      series: [{}, { label: "Cost (USD)", stroke: "#0b57d0", fill: "rgba(11,87,208,0.12)", value: (u, v) => (v === null ? "–" : `$${v.toFixed(4)}`) }],
      axes: [{}, { values: (u, vals) => vals.map((v) => `$${v}`) }],
      scales: { x: { time: true } },
    },
    [points.map((p) => p[0]), points.map((p) => p[1])],
    el,
  );
}
