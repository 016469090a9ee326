// Teams and customers with their budgets and live usage bars (GET .../usage); admins create,
// edit and delete them, a team admin edits their team's budgets and limits.

import { api, get, isAdmin, managesKeys } from "../api.js";
import { h, fill, table, field, toast, errorText, errorSlot, formError, focusOpener } from "../dom.js";
import { limitsFields, usageBars } from "../limits.js";
import { contentFields } from "../content.js";
import { toolsField } from "../tools.js";

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

/** The `data-opener` of a team's or customer's Edit button (see `focusOpener`). */
const opener = (kind, item) => `${kind}:${item.id}`;

export async function teams(el) {
  // Customers are listed to admins; a team admin, whom the API refuses them, sees none. An
  // admin's failed call fails the page (an empty list would offer "(none)" as every team's
  // customer).
  const [t, c] = await Promise.all([get("/api/teams"), isAdmin() ? get("/api/customers") : { customers: [] }]);
  const customerName = new Map(c.customers.map((x) => [x.id, x.name]));
  const [teamRows, customerRows] = await Promise.all([withUsage("teams", t.teams), withUsage("customers", c.customers)]);
  const editor = h("div", { "aria-live": "polite" });

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

  /** The editor of a team (`kind` "teams") or a customer ("customers"): its usage now, its
   *  name (and a team's customer) for admins, its budgets and limits. */
  function edit(kind, item, usage) {
    const team = kind === "teams";
    const what = team ? "team" : "customer";
    const limits = limitsFields(item);
    const content = team && isAdmin() ? contentFields(item.content_logging, { forKey: false }) : null;
    // The team's tool allowlist is the admin's (a key's own narrows it further).
    const tools = team && isAdmin() ? toolsField(item.mcp_tools, { owner: "the team's keys" }) : null;
    const name = field("Name", { name: "name", required: true, value: item.name, "data-path": "name" });
    const customer = team
      ? h(
          "label",
          {},
          "Customer",
          h("select", { name: "customer_id", "data-path": "customer_id" }, h("option", { value: "" }, "(none)"), c.customers.map((x) => h("option", { value: x.id, selected: x.id === item.customer_id }, x.name))),
        )
      : null;
    const form = h(
      "form",
      {
        "aria-label": `Edit ${what} ${item.name}`,
        onsubmit: async (e) => {
          e.preventDefault();
          const body = limits.read();
          if (isAdmin()) {
            body.name = name.querySelector("input").value.trim();
            // Sent only when changed, so a save never clears a customer it did not show.
            const chosen = customer ? customer.querySelector("select").value || null : undefined;
            if (team && chosen !== (item.customer_id ?? null)) body.customer_id = chosen;
          }
          if (content) body.content_logging = content.read();
          if (tools) body.mcp_tools = tools.read();
          try {
            await api("PUT", `/api/${kind}/${item.id}`, body);
            toast(`${item.name} saved`);
            await teams(el);
            focusOpener(opener(kind, item));
          } catch (err) {
            formError(form, err);
          }
        },
      },
      errorSlot(),
      isAdmin() ? h("div", { class: "row" }, name, customer) : null,
      limits.el,
      content ? content.el : null,
      tools ? tools.el : null,
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit", class: "primary" }, "Save"),
        h("button", { type: "button", onclick: () => {
          fill(editor);
          focusOpener(opener(kind, item));
        } }, "Cancel"),
        isAdmin() ? h("button", { type: "button", class: "danger", onclick: () => remove(kind, item) }, `Delete ${what}`) : null,
      ),
    );
    const heading = h("h2", { tabindex: "-1" }, `Edit ${what} ${item.name}`);
    fill(editor, h("section", { class: "panel", "aria-label": `Edit ${item.name}` }, heading, h("h3", {}, "Usage now"), usageBars(usage), form));
    heading.focus();
  }

  async function remove(kind, item) {
    if (!confirm(`Delete ${item.name}? Keys${kind === "customers" ? " and teams" : ""} that belong to it must be moved first.`)) return;
    try {
      await api("DELETE", `/api/${kind}/${item.id}`);
      toast(`${item.name} deleted`);
      await teams(el);
    } catch (err) {
      toast(errorText(err), true);
    }
  }

  const editButton = (kind, [x, u]) => h("button", { type: "button", "data-opener": opener(kind, x), onclick: () => edit(kind, x, u) }, `Edit ${x.name}`);

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
        { label: "Usage", value: ([, u]) => usageBars(u) },
        { label: "Requests", value: ([x]) => h("a", { href: `#/logs?team_id=${x.id}` }, "Logs") },
        ...(managesKeys() ? [{ label: "Actions", value: (row) => editButton("teams", row) }] : []),
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
        { label: "Usage", value: ([, u]) => usageBars(u) },
        ...(isAdmin() ? [{ label: "Actions", value: (row) => editButton("customers", row) }] : []),
      ],
      customerRows,
      { empty: "No customer yet.", caption: "Customers" },
    ),
    editor,
  );
}
