// Spend: GET /api/spend by hour or day, grouped by key, team, customer, user, model or provider,
// drawn with uPlot; the same report as CSV (GET /api/spend/export), or as an export job for
// large ranges (POST /api/jobs/export, followed and downloaded here).

import { get, download, withQuery } from "../api.js";
import { h, fill, table, select, toast, usd, int, errorBox } from "../dom.js";
import { startExport } from "./jobs.js";

/** Series colours, distinguishable and readable on white. */
const PALETTE = ["#0b57d0", "#b42318", "#1a7f37", "#9a6700", "#8250df", "#0e7490", "#bf3989", "#57606a", "#953800"];
const MAX_SERIES = 8;

const RANGES = [
  ["7", "Last 7 days"],
  ["30", "Last 30 days"],
  ["90", "Last 90 days"],
  ["365", "Last 365 days"],
];
const GROUPS = [
  ["", "Nothing (totals)"],
  ["key", "Virtual key"],
  ["team", "Team"],
  ["customer", "Customer"],
  ["user", "User"],
  ["model", "Model"],
  ["provider", "Provider"],
];

/** The label of a report row's group. */
function groupLabel(r, by) {
  switch (by) {
    case "key": return (r.key && (r.key.name || r.key.id)) || "(none)";
    case "team": return (r.team && (r.team.name || r.team.id)) || "(no team)";
    case "customer": return (r.customer && (r.customer.name || r.customer.id)) || "(no customer)";
    case "user": return (r.user && (r.user.name || r.user.id)) || "(no user)";
    case "model": return r.model || "–";
    case "provider": return r.provider || "–";
    default: return "All";
  }
}

/** Groups by total cost (top `MAX_SERIES`, the rest as "Other"), and the chart's columns:
 *  one point per bucket of the report's range (buckets without usage are 0). */
function series(report, by) {
  const rows = report.rows;
  const step = report.interval === "hour" ? 3600 : 86400;
  const totals = new Map();
  for (const r of rows) {
    const g = groupLabel(r, by);
    totals.set(g, (totals.get(g) || 0) + (r.cost_usd || 0));
  }
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([g]) => g);
  const shown = ranked.slice(0, MAX_SERIES);
  const other = ranked.length > MAX_SERIES;
  const names = other ? [...shown, "Other"] : shown;
  const times = [];
  const end = Date.parse(report.until) / 1000;
  for (let t = Date.parse(report.since) / 1000; t < end && times.length < 10000; t += step) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = names.map(() => times.map(() => 0));
  for (const r of rows) {
    const g = groupLabel(r, by);
    const s = shown.includes(g) ? shown.indexOf(g) : names.length - 1;
    const i = index.get(Date.parse(r.bucket) / 1000);
    if (i !== undefined) columns[s][i] += r.cost_usd || 0;
  }
  return { names, data: [times, ...columns] };
}

function draw(el, { names, data }, label) {
  if (!names.length || typeof uPlot === "undefined") {
    fill(el, h("p", { class: "empty" }, "No usage in this period."));
    return;
  }
  fill(el);
  const width = Math.max(320, Math.min(1200, el.clientWidth || 900));
  // eslint-disable-next-line no-undef
  new uPlot(
    {
      width,
      height: 280,
      series: [
        {},
        ...names.map((n, i) => ({
          label: n,
          stroke: PALETTE[i % PALETTE.length],
          width: 2,
          value: (u, v) => (v === null ? "–" : `$${v.toFixed(4)}`),
        })),
      ],
      axes: [{}, { size: 80, values: (u, vals) => vals.map((v) => `$${v}`) }],
      scales: { x: { time: true } },
    },
    data,
    el,
  );
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", label);
}

/** The overview's chart: cost per day over the last 30 days, and the top keys. */
export async function spendChart(el) {
  let byDay;
  let byKey;
  try {
    [byDay, byKey] = await Promise.all([get(withQuery("/api/spend", { interval: "day" })), get(withQuery("/api/spend", { group_by: "key" }))]);
  } catch (e) {
    fill(el, h("p", { class: "hint" }, `Spend is not available: ${e.message}`));
    return;
  }
  const plot = h("div", { class: "chart" });
  const top = [...byKey.rows].sort((a, b) => (b.cost_usd || 0) - (a.cost_usd || 0)).slice(0, 10);
  fill(
    el,
    h("h2", {}, "Spend, last 30 days"),
    plot,
    h("h2", {}, "Top keys"),
    table(
      [
        { label: "Key", value: (r) => groupLabel(r, "key") },
        { label: "Requests", num: true, value: (r) => int(r.requests) },
        { label: "Cost", num: true, value: (r) => usd(r.cost_usd) },
      ],
      top,
      { empty: "No usage yet.", caption: "Top keys by cost" },
    ),
  );
  draw(plot, series(byDay, ""), "Cost per day over the last 30 days");
}

/** The spend page. */
export async function spend(el) {
  const form = h(
    "form",
    { class: "filters", "aria-label": "Spend report" },
    select("Time", "days", RANGES, "30"),
    select("Per", "interval", [["day", "Day"], ["hour", "Hour (up to 31 days)"]], "day"),
    select("Group by", "group_by", GROUPS, "team"),
    h("button", { type: "submit", class: "primary" }, "Show"),
    h("button", { type: "button", onclick: () => exportCsv() }, "Download CSV"),
    h("button", { type: "button", onclick: () => exportJob() }, "Export as job"),
  );
  const exportStatus = h("p", { "aria-live": "polite" });
  const plot = h("div", { class: "chart" });
  const totals = h("div", { class: "cards" });
  const list = h("div");

  const params = () => {
    const d = new FormData(form);
    const days = Number(d.get("days"));
    const interval = d.get("interval") === "hour" && days <= 31 ? "hour" : "day";
    return { interval, group_by: d.get("group_by") || "", since: new Date(Date.now() - days * 86400e3).toISOString() };
  };

  async function exportCsv() {
    try {
      const blob = await download(withQuery("/api/spend/export", params()));
      const href = URL.createObjectURL(blob);
      const a = h("a", { href, download: "tollgate-spend.csv" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 0);
    } catch (e) {
      toast(e.message, true);
    }
  }

  // The same CSV, written in the background (for large ranges); followed in `exportStatus`.
  function exportJob() {
    startExport({ kind: "spend", format: "csv", query: params() }, exportStatus).catch((e) => fill(exportStatus, errorBox(e)));
  }

  async function load() {
    const p = params();
    const report = await get(withQuery("/api/spend", p));
    const t = report.totals;
    fill(
      totals,
      [["Cost", usd(t.cost_usd)], ["Requests", int(t.requests)], ["Input tokens", int(t.tokens.input + t.tokens.cache_read + t.tokens.cache_write)], ["Output tokens", int(t.tokens.output)], ["Unpriced requests", int(t.unpriced_requests)]].map(([k, v]) =>
        h("div", { class: "card" }, h("div", { class: "label" }, k), h("div", { class: "value" }, v)),
      ),
    );
    draw(plot, series(report, p.group_by), `Cost per ${p.interval}${p.group_by ? ` by ${p.group_by}` : ""}`);
    const whole = await get(withQuery("/api/spend", { ...p, interval: "none" }));
    const rows = [...whole.rows].sort((a, b) => (b.cost_usd || 0) - (a.cost_usd || 0));
    fill(
      list,
      table(
        [
          { label: p.group_by ? GROUPS.find(([v]) => v === p.group_by)[1] : "Total", value: (r) => groupLabel(r, p.group_by) },
          { label: "Requests", num: true, value: (r) => int(r.requests) },
          { label: "Refused by limits", num: true, value: (r) => int(r.refused_requests) },
          { label: "Input tokens", num: true, value: (r) => int(r.tokens.input + r.tokens.cache_read + r.tokens.cache_write) },
          { label: "Output tokens", num: true, value: (r) => int(r.tokens.output) },
          { label: "Cost", num: true, value: (r) => usd(r.cost_usd) },
          { label: "Unpriced", num: true, value: (r) => int(r.unpriced_requests) },
        ],
        rows,
        { empty: "No usage in this period.", caption: "Spend by group" },
      ),
    );
  }

  const fail = (e) => fill(list, errorBox(e));
  form.addEventListener("submit", (e) => { e.preventDefault(); load().catch(fail); });
  fill(el, h("h1", {}, "Spend"), h("p", { class: "hint" }, "From the usage rollups, updated as usage arrives (UTC hours and days)."), form, exportStatus, totals, plot, list);
  await load().catch(fail);
}
