// Teams and customers with their budgets and live usage bars (GET .../usage).

import { api, get, isAdmin } from "../api.js";
import { h, fill, table, field, toast, bar, usd, int, errorText } from "../dom.js";

function usageCell(u) {
  if (!u) return "–";
  const parts = [];
  for (const b of u.budgets || []) {
    parts.push(bar(b.spent, b.max_limit, `${usd(b.spent)} of ${usd(b.max_limit)} / ${b.reset_duration}`));
  }
  if (u.requests) parts.push(bar(u.requests.used, u.requests.max_limit, `${int(u.requests.used)} of ${int(u.requests.max_limit)} requests / ${u.requests.reset_duration}`));
  if (!parts.length) parts.push(h("span", { class: "hint" }, "no limits"));
  parts.push(h("span", {}, `${int(u.in_flight)} in flight`));
  return h("div", {}, parts);
}

async function withUsage(kind, items) {
  return Promise.all(
    items.map(async (item) => {
      try {
        return [item, await get(`/api/${kind}/${item.id}/usage`)];
      } catch {
        return [item, null];
      }
    }),
  );
}

export async function teams(el) {
  const [t, c] = await Promise.all([get("/api/teams"), get("/api/customers").catch(() => ({ customers: [] }))]);
  const customerName = new Map(c.customers.map((x) => [x.id, x.name]));
  const [teamRows, customerRows] = await Promise.all([withUsage("teams", t.teams), withUsage("customers", c.customers)]);

  const create = (path, what) => async (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const body = { name: String(data.get("name")).trim() };
    if (data.get("customer_id")) body.customer_id = data.get("customer_id");
    const budget = String(data.get("budget") || "").trim();
    if (budget) body.budgets = [{ max_limit: Number(budget), reset_duration: "1M", calendar_aligned: true }];
    try {
      await api("POST", path, body);
      toast(`${what} ${body.name} created`);
      await teams(el);
    } catch (err) {
      toast(errorText(err), true);
    }
  };

  fill(
    el,
    h("h1", {}, "Teams"),
    isAdmin()
      ? h(
          "form",
          { class: "inline", "aria-label": "New team", onsubmit: create("/api/teams", "Team") },
          field("Name", { name: "name", required: true }),
          h("label", {}, "Customer", h("select", { name: "customer_id" }, h("option", { value: "" }, "(none)"), c.customers.map((x) => h("option", { value: x.id }, x.name)))),
          field("Monthly budget (USD)", { name: "budget", type: "number", min: "0", step: "0.01" }),
          h("button", { type: "submit", class: "primary" }, "Create team"),
        )
      : null,
    table(
      [
        { label: "Team", value: ([x]) => x.name },
        { label: "Customer", value: ([x]) => (x.customer_id ? customerName.get(x.customer_id) || x.customer_id : "–") },
        { label: "Usage", value: ([, u]) => usageCell(u) },
        { label: "Requests", value: ([x]) => h("a", { href: `#/logs?team_id=${x.id}` }, "Logs") },
      ],
      teamRows,
      { empty: "No team yet.", caption: "Teams" },
    ),
    h("h2", {}, "Customers"),
    isAdmin()
      ? h(
          "form",
          { class: "inline", "aria-label": "New customer", onsubmit: create("/api/customers", "Customer") },
          field("Name", { name: "name", required: true }),
          field("Monthly budget (USD)", { name: "budget", type: "number", min: "0", step: "0.01" }),
          h("button", { type: "submit", class: "primary" }, "Create customer"),
        )
      : null,
    table(
      [
        { label: "Customer", value: ([x]) => x.name },
        { label: "Usage", value: ([, u]) => usageCell(u) },
      ],
      customerRows,
      { empty: "No customer yet.", caption: "Customers" },
    ),
  );
}
