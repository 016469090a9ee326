// Log explorer: GET /api/logs with its filters, a page at a time, and one request's detail.
// Neither carries bodies, so both stay fast whatever the prompts' size; recorded bodies
// (content logging) are fetched only when asked for, and shown a slice at a time.

import { get, withQuery, managesKeys } from "../api.js";
import { h, fill, table, field, select, usd, int, ms, when, statusBadge, errorBox } from "../dom.js";

const RANGES = [
  ["1h", "Last hour", 3600e3],
  ["24h", "Last 24 hours", 86400e3],
  ["7d", "Last 7 days", 7 * 86400e3],
  ["31d", "Last 31 days", 31 * 86400e3],
];

export async function logs(el) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filters" },
    select("Time", "range", RANGES.map(([v, t]) => [v, t]), params.get("range") || "24h"),
    field("Virtual key id", { name: "virtual_key_id", value: params.get("virtual_key_id") || "", size: 36 }),
    field("Team id", { name: "team_id", value: params.get("team_id") || "", size: 36 }),
    field("User id", { name: "user_id", value: params.get("user_id") || "", size: 36 }),
    field("Model", { name: "model", value: params.get("model") || "" }),
    field("Provider", { name: "provider", value: params.get("provider") || "" }),
    field("Status", { name: "status", value: params.get("status") || "", placeholder: "429, 5xx", size: 6 }),
    field("Min cost (USD)", { name: "min_cost_usd", value: params.get("min_cost_usd") || "", size: 8 }),
    h("button", { type: "submit", class: "primary" }, "Apply"),
  );
  const results = h("div", { "aria-live": "polite" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  let cursor = null;
  let rows = [];
  // The filters of the pages shown: fixed when applied, so "Load more" continues the same
  // query (a cursor needs the same filters; `since` and `until` from one instant).
  let applied = null;

  const query = () => {
    const data = new FormData(form);
    const range = RANGES.find(([v]) => v === data.get("range")) || RANGES[1];
    const now = Date.now();
    const q = { since: new Date(now - range[2]).toISOString(), until: new Date(now).toISOString(), limit: 100 };
    for (const k of ["virtual_key_id", "team_id", "user_id", "model", "provider", "status", "min_cost_usd"]) {
      const v = String(data.get(k) || "").trim();
      if (v) q[k] = v;
    }
    return q;
  };

  const load = async (append) => {
    if (!append) applied = query();
    const q = append && cursor ? { ...applied, cursor } : applied;
    const page = await get(withQuery("/api/logs", q));
    rows = append ? rows.concat(page.logs) : page.logs;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    fill(
      results,
      h("p", { class: "hint" }, `${rows.length} request${rows.length === 1 ? "" : "s"}${cursor ? " (more available)" : ""}`),
      table(
        [
          { label: "Started", value: (r) => when(r.started_at) },
          { label: "Key", value: (r) => r.virtual_key.name || r.virtual_key.id },
          { label: "User", value: (r) => (r.user ? r.user.user_name || r.user.id : "–") },
          { label: "Model", value: (r) => r.model_requested },
          { label: "Provider", value: (r) => r.provider },
          { label: "Status", value: (r) => statusBadge(r.status) },
          { label: "Tokens in/out", num: true, value: (r) => `${int(r.tokens.input + r.tokens.cache_read + r.tokens.cache_write)} / ${int(r.tokens.output)}` },
          { label: "Cost", num: true, value: (r) => usd(r.cost_usd) },
          { label: "Latency", num: true, value: (r) => ms(r.latency_ms) },
        ],
        rows,
        { onRow: (r) => { location.hash = `#/logs/${encodeURIComponent(r.request_id)}`; }, empty: "No request matches.", caption: "Requests" },
      ),
    );
  };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) q.set(k, String(v).trim());
    history.replaceState(null, "", `#/logs?${q}`);
    await load(false).catch(showError(results));
  });
  more.addEventListener("click", () => load(true).catch(showError(results)));
  fill(el, h("h1", {}, "Logs"), h("p", { class: "hint" }, "Newest first. Select a request for its detail."), form, results, more);
  await load(false).catch(showError(results));
}

const showError = (el) => (e) => fill(el, errorBox(e));

export async function logDetail(el, requestId) {
  const r = await get(`/api/logs/${encodeURIComponent(requestId)}`);
  const row = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  fill(
    el,
    h("p", {}, h("a", { href: "#/logs" }, "← Logs")),
    h("h1", {}, "Request ", h("code", {}, r.request_id)),
    h(
      "dl",
      { class: "detail" },
      row("Started", when(r.started_at)),
      row("Virtual key", `${r.virtual_key.name || "(deleted)"} (${r.virtual_key.id})`),
      row("Billed to user", r.user ? `${r.user.user_name || ""} (${r.user.id})` : "–"),
      row("Billed to team", r.team_id || "–"),
      row("Billed to customer", r.customer_id || "–"),
      row("Provider", r.provider),
      row("Model requested", r.model_requested),
      row("Model served", r.model_resolved),
      row("Provider key", r.provider_key_id || "–"),
      row("Status", statusBadge(r.status)),
      row("Error class", r.error_class || "–"),
      row("Stream", r.stream ? "yes" : "no"),
      row("Input tokens", int(r.tokens.input)),
      row("Output tokens", int(r.tokens.output)),
      row("Cache reads", int(r.tokens.cache_read)),
      row("Cache writes", `${int(r.tokens.cache_write)} (1 h TTL: ${int(r.tokens.cache_write_1h)})`),
      row("Cost", usd(r.cost_usd)),
      row("Latency", ms(r.latency_ms)),
      row("Time to first token", ms(r.time_to_first_token_ms)),
      row("Fallback index", String(r.fallback_index)),
    ),
    h("h2", {}, "Attempts given up"),
    table(
      [
        { label: "Provider", value: (a) => a.provider },
        { label: "Model", value: (a) => a.model },
        { label: "Provider key", value: (a) => a.provider_key_id },
        { label: "Why", value: (a) => a.class },
        { label: "Status", value: (a) => String(a.status) },
        { label: "Latency", num: true, value: (a) => ms(a.latency_ms) },
      ],
      r.attempts || [],
      { empty: "The first attempt served." },
    ),
    managesKeys() ? bodies(r.request_id) : "",
  );
}

/** Characters of a body shown at first; the rest on request. */
const SHOWN = 64 * 1024;

/** The recorded bodies of a request, fetched (and audited) only when the reader asks. */
function bodies(requestId) {
  const out = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "button" }, "Show recorded bodies");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const c = await get(`/api/logs/${encodeURIComponent(requestId)}/content`);
      fill(out, body("Request", c.request), body("Response", c.response));
      button.hidden = true;
    } catch (e) {
      button.disabled = false;
      fill(out, e.status === 404
        ? h("p", { class: "hint" }, "No bodies were recorded for this request: content logging is off for its key and team, or they are past their retention.")
        : errorBox(e));
    }
  });
  return h(
    "section",
    { "aria-label": "Recorded bodies" },
    h("h2", {}, "Recorded bodies"),
    h("p", { class: "hint" }, "Only when content logging is on for the key or its team. Reading them is written to the audit log."),
    button,
    out,
  );
}

function body(title, b) {
  const text = b.encoding === "utf8" ? b.body : `(base64) ${b.body}`;
  const pre = h("pre", { class: "body", tabindex: "0", "aria-label": `${title} body` }, text.slice(0, SHOWN));
  const note = `${int(b.bytes)} bytes sent${b.truncated ? ` (cut at the key's limit: ${int(text.length)} characters recorded)` : ""}`;
  const parts = [h("h3", {}, title), h("p", { class: "hint" }, note), pre];
  if (text.length > SHOWN) {
    const all = h("button", { type: "button" }, `Show all ${int(text.length)} characters`);
    all.addEventListener("click", () => { pre.textContent = text; all.hidden = true; });
    parts.push(all);
  }
  return h("div", {}, ...parts);
}
