// Prices: the shipped table and the admin's overrides (USD per million tokens). Admins add an
// override (from scratch, or starting from a shipped entry), edit one (PUT replaces the whole
// entry) and delete one (the shipped price applies again).

import { api, get, isAdmin } from "../api.js";
import { h, fill, table, field, toast, errorText, errorSlot, formError, focusOpener } from "../dom.js";

const price = (v) => (v === null || v === undefined ? "–" : `$${v}`);
const PROVIDERS = ["anthropic", "bedrock", "vertex", "openai"];
const RATES = [
  ["input", "Input"],
  ["output", "Output"],
  ["cache_write_5m", "Cache write 5m"],
  ["cache_write_1h", "Cache write 1h"],
  ["cache_read", "Cache read"],
];

export async function pricing(el) {
  const p = await get("/api/pricing");
  const editor = h("div", { "aria-live": "polite" });
  // `opener`: the `data-opener` of the button that opened the form, focused again when it closes.
  const open = (entry, id, opener) => {
    const close = () => {
      fill(editor);
      focusOpener(opener);
    };
    const saved = async () => {
      await pricing(el);
      focusOpener(opener);
    };
    fill(editor, overrideForm(entry, id, saved, close));
    editor.querySelector("h2").focus();
  };
  const columns = (extra) => [
    { label: "Provider", value: (r) => r.provider },
    { label: "Models", value: (r) => r.models.join(", ") },
    ...RATES.map(([k, label]) => ({ label, num: true, value: (r) => price(r[k]) })),
    ...extra,
  ];
  const remove = async (o) => {
    if (!confirm(`Delete the override of ${o.models.join(", ")}? The shipped price, if any, applies again.`)) return;
    try {
      await api("DELETE", `/api/pricing/${o.id}`);
      toast("Override deleted");
      await pricing(el);
    } catch (err) {
      toast(errorText(err), true);
    }
  };
  const overrideActions = isAdmin()
    ? [
        {
          label: "Actions",
          value: (o) =>
            h(
              "div",
              { class: "row" },
              h("button", { type: "button", "aria-label": `Edit the override of ${o.models.join(", ")}`, "data-opener": `price-override:${o.id}`, onclick: () => open(o, o.id, `price-override:${o.id}`) }, "Edit"),
              h("button", { type: "button", class: "danger", "aria-label": `Delete the override of ${o.models.join(", ")}`, onclick: () => remove(o) }, "Delete"),
            ),
        },
      ]
    : [];
  const shippedActions = isAdmin()
    ? [{ label: "Override", value: (r) => h("button", { type: "button", "aria-label": `Override the price of ${r.models.join(", ")}`, "data-opener": `price-shipped:${r.provider}:${r.models.join(",")}`, onclick: () => open(r, null, `price-shipped:${r.provider}:${r.models.join(",")}`) }, "Override") }]
    : [];
  fill(
    el,
    h("h1", {}, "Pricing"),
    h("p", { class: "hint" }, "USD per million tokens. Overrides win over the shipped table (oldest first) and apply from the next config version on."),
    isAdmin() ? recompute() : null,
    h("h2", {}, "Overrides"),
    isAdmin() ? h("button", { type: "button", class: "primary", "data-opener": "price-add", onclick: () => open(null, null, "price-add") }, "Add an override") : null,
    table(columns([{ label: "Source", value: (r) => r.source || "–" }, ...overrideActions]), p.overrides, { empty: "No override.", caption: "Overrides" }),
    editor,
    h("h2", {}, "Shipped prices"),
    table(columns([{ label: "Source", value: (r) => (r.source ? h("a", { href: r.source, rel: "noreferrer" }, "source") : "–") }, ...shippedActions]), p.shipped, { caption: "Shipped prices" }),
  );
}

/** The form of an override: a new one (`id` null; `entry` null, or a shipped entry to start
 *  from) or an existing one (`id`), which PUT replaces whole. `saved` runs once it is stored,
 *  `close` on Cancel. */
function overrideForm(entry, id, saved, close) {
  const e = entry || {};
  const lc = e.long_context || {};
  const num = (label, name, value, attrs = {}) =>
    field(label, { name, type: "number", min: "0", step: "any", value: value ?? "", "data-path": name, ...attrs });
  const form = h(
    "form",
    {
      "aria-label": id ? "Edit price override" : "New price override",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const data = new FormData(ev.target);
        const text = (k) => String(data.get(k) || "").trim();
        const body = {
          provider: text("provider"),
          models: text("models").split("\n").map((s) => s.trim()).filter(Boolean),
          regional_premium_percent: text("regional_premium_percent") === "" ? 0 : Number(text("regional_premium_percent")),
        };
        for (const [k] of RATES) body[k] = Number(text(k));
        if (text("source")) body.source = text("source");
        if (text("note")) body.note = text("note");
        if (text("long_context.above_input_tokens")) {
          body.long_context = { above_input_tokens: Number(text("long_context.above_input_tokens")) };
          // An empty rate is left out (never sent as 0, a free tier): the API refuses the tier,
          // naming the missing field.
          for (const [k] of RATES) {
            if (text(`long_context.${k}`) !== "") body.long_context[k] = Number(text(`long_context.${k}`));
          }
        }
        try {
          if (id) await api("PUT", `/api/pricing/${id}`, body);
          else await api("POST", "/api/pricing", body);
          toast(id ? "Override saved" : "Override added");
          await saved();
        } catch (err) {
          formError(form, err);
        }
      },
    },
    errorSlot(),
    h(
      "div",
      { class: "row" },
      h("label", {}, "Provider kind", h("select", { name: "provider", "data-path": "provider" }, PROVIDERS.map((p) => h("option", { value: p, selected: p === (e.provider || "bedrock") }, p)))),
      h("label", {}, "Model patterns (one a line; * matches any run)", h("textarea", { name: "models", rows: "2", cols: "50", required: true, spellcheck: "false", "data-path": "models" }, (e.models || []).join("\n"))),
    ),
    h("div", { class: "row" }, RATES.map(([k, label]) => num(`${label} (USD / M tokens)`, k, e[k], { required: true }))),
    h(
      "div",
      { class: "row" },
      field("Regional premium (%)", { name: "regional_premium_percent", type: "number", min: "0", max: "100", step: "1", value: e.regional_premium_percent ?? 0, "data-path": "regional_premium_percent" }),
      field("Source (a page, a contract)", { name: "source", size: "40", value: id ? e.source || "" : "", "data-path": "source" }),
      field("Note", { name: "note", size: "40", value: id ? e.note || "" : "", "data-path": "note" }),
    ),
    h(
      "details",
      { open: e.long_context ? true : null },
      h("summary", {}, "Long-context tier (optional)"),
      h(
        "div",
        { class: "row" },
        field("Above input tokens", { name: "long_context.above_input_tokens", type: "number", min: "1", step: "1", value: lc.above_input_tokens ?? "", "data-path": "long_context.above_input_tokens" }),
        RATES.map(([k, label]) => num(`Long context: ${label}`, `long_context.${k}`, lc[k])),
      ),
    ),
    h(
      "div",
      { class: "row" },
      h("button", { type: "submit", class: "primary" }, id ? "Save override" : "Add override"),
      h("button", { type: "button", onclick: close }, "Cancel"),
    ),
  );
  return h(
    "section",
    { class: "panel", "aria-label": id ? "Edit price override" : "New price override" },
    h("h2", { tabindex: "-1" }, id ? `Edit the override of ${e.models.join(", ")}` : entry ? `Override the price of ${e.models.join(", ")}` : "New price override"),
    form,
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
