// The governance shapes every owner shares (virtual keys, their provider configs, teams and
// customers): budgets (`max_limit` USD per `reset_duration`, optionally calendar-aligned), a
// request and a token rate limit, and `max_concurrent`. One form part for all of them, read back
// into the admin API's JSON; each control carries (as `data-path`) the JSON path the API names
// in its errors, so `formError` shows an error next to the field it is about.

import { h, bar, usd, int, checkbox } from "./dom.js";

/** The admin API's window durations (`reset_duration`). */
export const PERIODS = [
  ["1m", "minute"],
  ["5m", "5 minutes"],
  ["1h", "hour"],
  ["1d", "day"],
  ["1w", "week"],
  ["1M", "month"],
  ["1Y", "year"],
];

function periodSelect(label, value) {
  return h(
    "label",
    {},
    label,
    h("select", {}, PERIODS.map(([v, t]) => h("option", { value: v, selected: v === value }, `${v} (${t})`))),
  );
}

const numberOrNull = (input) => {
  const v = input.value.trim();
  return v === "" ? null : Number(v);
};

/**
 * The limits part of a form, filled with `current` (`{budgets, rate_limit, max_concurrent}` as
 * the API returns them). `prefix` is the JSON path of the owner's limits in the request body
 * (`""` for a key, a team or a customer; `provider_configs[0].` for a provider config); `what`
 * names the owner in labels, so several parts on one page stay distinguishable; `legend` titles
 * the part.
 * Returns `{el, read}`: `read(at)` gives `{budgets, rate_limit, max_concurrent}` for the request
 * (an empty list, or null, clears), with the controls' paths under `at` (default `prefix`).
 */
export function limitsFields(current, { prefix = "", what = "", legend = null } = {}) {
  const of = what ? ` of ${what}` : "";
  const rows = h("div", { class: "budget-rows" });
  const budgetRows = [];

  function addBudget(b) {
    const max = h("input", { type: "number", min: "0", step: "any", required: true, value: b ? String(b.max_limit) : "" });
    const period = periodSelect(`Budget period${of}`, b ? b.reset_duration : "1M");
    const aligned = checkbox(`Calendar-aligned${of}`, { checked: b ? b.calendar_aligned : true });
    // A listed budget's id goes back with it: the API keeps the budget (its windows and spend)
    // by id even when its period changes.
    const row = { id: b?.id ?? null };
    const remove = h("button", { type: "button", class: "danger", onclick: () => {
      budgetRows.splice(budgetRows.indexOf(row), 1);
      row.el.remove();
    } }, "Remove budget");
    Object.assign(row, {
      el: h("div", { class: "row budget" }, h("label", {}, `Budget${of} (USD)`, max), period, aligned, remove),
      max,
      period: period.querySelector("select"),
      aligned: aligned.querySelector("input"),
    });
    budgetRows.push(row);
    rows.append(row.el);
    return row;
  }
  for (const b of current?.budgets || []) addBudget(b);

  const rl = current?.rate_limit || {};
  const reqMax = h("input", { type: "number", min: "1", step: "1", value: rl.request_max_limit ?? "" });
  const reqPer = periodSelect(`Request window${of}`, rl.request_reset_duration || "1m");
  const tokMax = h("input", { type: "number", min: "1", step: "1", value: rl.token_max_limit ?? "" });
  const tokPer = periodSelect(`Token window${of}`, rl.token_reset_duration || "1h");
  const concurrent = h("input", { type: "number", min: "1", step: "1", value: current?.max_concurrent ?? "" });

  /** Sets every control's JSON path under `at` (rows may have been added or removed). */
  function stamp(at) {
    rows.dataset.path = `${at}budgets`;
    budgetRows.forEach((r, i) => {
      r.el.dataset.path = `${at}budgets[${i}]`;
      r.max.dataset.path = `${at}budgets[${i}].max_limit`;
      r.period.dataset.path = `${at}budgets[${i}].reset_duration`;
      r.aligned.dataset.path = `${at}budgets[${i}].calendar_aligned`;
    });
    reqMax.dataset.path = `${at}rate_limit.request_max_limit`;
    reqPer.querySelector("select").dataset.path = `${at}rate_limit.request_reset_duration`;
    tokMax.dataset.path = `${at}rate_limit.token_max_limit`;
    tokPer.querySelector("select").dataset.path = `${at}rate_limit.token_reset_duration`;
    concurrent.dataset.path = `${at}max_concurrent`;
  }
  stamp(prefix);

  const el = h(
    "fieldset",
    { class: "limits" },
    h("legend", {}, legend || (what ? `Limits of ${what}` : "Budgets and limits")),
    rows,
    h("button", { type: "button", onclick: () => addBudget(null).max.focus() }, `Add a budget${of}`),
    h("p", { class: "hint" }, "Leave a limit empty for none."),
    h("div", { class: "row" }, h("label", {}, `Requests per window${of}`, reqMax), reqPer),
    h("div", { class: "row" }, h("label", {}, `Tokens per window${of}`, tokMax), tokPer),
    h("label", {}, `Requests in flight at once${of} (max_concurrent)`, concurrent),
  );

  /** The limits to send; `at` is their JSON path in the body now (default: `prefix`). */
  function read(at = prefix) {
    stamp(at);
    const budgets = budgetRows.map((r) => {
      const budget = { max_limit: numberOrNull(r.max), reset_duration: r.period.value, calendar_aligned: r.aligned.checked };
      if (r.id) budget.id = r.id;
      return budget;
    });
    const rate = {};
    const requests = numberOrNull(reqMax);
    const tokens = numberOrNull(tokMax);
    if (requests !== null) {
      rate.request_max_limit = requests;
      rate.request_reset_duration = reqPer.querySelector("select").value;
    }
    if (tokens !== null) {
      rate.token_max_limit = tokens;
      rate.token_reset_duration = tokPer.querySelector("select").value;
    }
    return {
      budgets,
      rate_limit: requests === null && tokens === null ? null : rate,
      max_concurrent: numberOrNull(concurrent),
    };
  }

  return { el, read };
}

/** The current windows of an owner (`GET .../usage`) as usage bars: spend of each budget,
 *  requests and tokens against their limits, and requests in flight. */
export function usageBars(u) {
  if (!u) return h("p", { class: "hint" }, "Usage unavailable.");
  const items = [];
  for (const b of u.budgets || []) {
    items.push(h("li", {}, `Budget per ${b.reset_duration}: `, bar(b.spent, b.max_limit, `${usd(b.spent)} of ${usd(b.max_limit)}`)));
  }
  if (u.requests) items.push(h("li", {}, `Requests per ${u.requests.reset_duration}: `, bar(u.requests.used, u.requests.max_limit, `${int(u.requests.used)} of ${int(u.requests.max_limit)}`)));
  if (u.tokens) items.push(h("li", {}, `Tokens per ${u.tokens.reset_duration}: `, bar(u.tokens.used, u.tokens.max_limit, `${int(u.tokens.used)} of ${int(u.tokens.max_limit)}`)));
  if (!items.length) items.push(h("li", { class: "hint" }, "No limits."));
  items.push(h("li", {}, `In flight: ${int(u.in_flight)}${u.max_concurrent ? ` of ${int(u.max_concurrent)}` : ""}`));
  return h("ul", { class: "usage" }, items);
}
