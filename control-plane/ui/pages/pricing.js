// Prices: the shipped table and the admin's overrides (USD per million tokens).

import { api, get, isAdmin } from "../api.js";
import { h, fill, table, field, toast, errorText } from "../dom.js";

const price = (v) => (v === null || v === undefined ? "–" : `$${v}`);

export async function pricing(el) {
  const p = await get("/api/pricing");
  const columns = (extra) => [
    { label: "Provider", value: (r) => r.provider },
    { label: "Models", value: (r) => r.models.join(", ") },
    { label: "Input", num: true, value: (r) => price(r.input) },
    { label: "Output", num: true, value: (r) => price(r.output) },
    { label: "Cache write 5m", num: true, value: (r) => price(r.cache_write_5m) },
    { label: "Cache write 1h", num: true, value: (r) => price(r.cache_write_1h) },
    { label: "Cache read", num: true, value: (r) => price(r.cache_read) },
    ...extra,
  ];
  fill(
    el,
    h("h1", {}, "Pricing"),
    h("p", { class: "hint" }, "USD per million tokens. Overrides win over the shipped table; change them with /api/pricing."),
    isAdmin() ? recompute() : null,
    h("h2", {}, "Overrides"),
    table(columns([{ label: "Id", value: (r) => h("code", {}, r.id) }]), p.overrides, { empty: "No override.", caption: "Overrides" }),
    h("h2", {}, "Shipped prices"),
    table(columns([{ label: "Source", value: (r) => (r.source ? h("a", { href: r.source, rel: "noreferrer" }, "source") : "–") }]), p.shipped, { caption: "Shipped prices" }),
  );
}

/** Re-prices stored usage with the prices in force now, as a job (followed on the Jobs page). */
function recompute() {
  const since = new Date(Date.now() - 30 * 86400e3).toISOString().slice(0, 10);
  return h(
    "form",
    {
      class: "inline",
      "aria-label": "Recompute costs",
      onsubmit: async (e) => {
        e.preventDefault();
        const day = String(new FormData(e.target).get("since"));
        try {
          await api("POST", "/api/jobs/recompute-costs", { since: `${day}T00:00:00Z` });
          location.hash = "#/jobs";
        } catch (err) {
          toast(errorText(err), true);
        }
      },
    },
    field("Recompute the cost of usage since (UTC day)", { name: "since", type: "date", value: since, required: true }),
    h("button", { type: "submit", class: "primary" }, "Recompute costs"),
  );
}
