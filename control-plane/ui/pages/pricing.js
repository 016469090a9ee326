// Prices: the shipped table and the admin's overrides (USD per million tokens).

import { get } from "../api.js";
import { h, fill, table } from "../dom.js";

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
    h("h2", {}, "Overrides"),
    table(columns([{ label: "Id", value: (r) => h("code", {}, r.id) }]), p.overrides, { empty: "No override.", caption: "Overrides" }),
    h("h2", {}, "Shipped prices"),
    table(columns([{ label: "Source", value: (r) => (r.source ? h("a", { href: r.source, rel: "noreferrer" }, "source") : "–") }]), p.shipped, { caption: "Shipped prices" }),
  );
}
