// Virtual keys: the list (a team admin sees their team's, a member their own), creation (the
// value is shown once), enabling, disabling and deleting, with each key's live usage.

import { api, get, managesKeys, isAdmin, session } from "../api.js";
import { h, fill, table, field, select, toast, when, bar, usd, int, errorText } from "../dom.js";

export async function keys(el) {
  const teams = session.me.role === "member" ? { teams: [] } : await get("/api/teams");
  const teamName = new Map(teams.teams.map((t) => [t.id, t.name]));
  const created = h("div", { "aria-live": "polite" });
  const usage = h("div");

  const form = managesKeys()
    ? h(
        "form",
        { class: "inline", "aria-label": "New virtual key", onsubmit: (e) => create(e) },
        field("Name", { name: "name", required: true }),
        select(
          "Team",
          "team_id",
          [isAdmin() ? ["", "(none)"] : null, ...teams.teams.map((t) => [t.id, t.name])].filter(Boolean),
          isAdmin() ? "" : undefined,
        ),
        field("Monthly budget (USD, optional)", { name: "budget", type: "number", min: "0", step: "0.01" }),
        h("button", { type: "submit", class: "primary" }, "Create key"),
      )
    : null;

  async function create(e) {
    e.preventDefault();
    const data = new FormData(e.target);
    const body = { name: String(data.get("name")).trim() };
    if (data.get("team_id")) body.team_id = data.get("team_id");
    const budget = String(data.get("budget") || "").trim();
    if (budget) body.budgets = [{ max_limit: Number(budget), reset_duration: "1M", calendar_aligned: true }];
    try {
      const k = await api("POST", "/api/virtual-keys", body);
      e.target.reset();
      fill(
        created,
        h(
          "div",
          { class: "secret", role: "alert" },
          h("p", {}, `Key "${k.name}" created. Copy its value now: it is not shown again.`),
          h("code", { "data-testid": "new-key-value" }, k.value),
        ),
      );
      await render();
    } catch (err) {
      toast(errorText(err), true);
    }
  }

  async function setActive(k, active) {
    try {
      await api("PUT", `/api/virtual-keys/${k.id}`, { is_active: active });
      toast(`${k.name} ${active ? "enabled" : "disabled"}`);
      await render();
    } catch (err) {
      toast(err.message, true);
    }
  }

  async function remove(k) {
    if (!confirm(`Delete the virtual key "${k.name}"? Requests with it will be refused.`)) return;
    try {
      await api("DELETE", `/api/virtual-keys/${k.id}`);
      toast(`${k.name} deleted`);
      await render();
    } catch (err) {
      toast(err.message, true);
    }
  }

  async function showUsage(k) {
    const u = await get(`/api/virtual-keys/${k.id}/usage`);
    const rows = [];
    for (const b of u.budgets || []) {
      rows.push(h("li", {}, `Budget ${b.reset_duration}: `, bar(b.spent, b.max_limit, `${usd(b.spent)} of ${usd(b.max_limit)}`)));
    }
    if (u.requests) rows.push(h("li", {}, `Requests per ${u.requests.reset_duration}: `, bar(u.requests.used, u.requests.max_limit, `${int(u.requests.used)} of ${int(u.requests.max_limit)}`)));
    if (u.tokens) rows.push(h("li", {}, `Tokens per ${u.tokens.reset_duration}: `, bar(u.tokens.used, u.tokens.max_limit, `${int(u.tokens.used)} of ${int(u.tokens.max_limit)}`)));
    rows.push(h("li", {}, `In flight: ${int(u.in_flight)}`));
    fill(usage, h("div", { class: "panel" }, h("h2", {}, `Usage of ${k.name}`), h("ul", {}, rows), h("p", {}, h("a", { href: `#/logs?virtual_key_id=${k.id}` }, "Its requests in the log"))));
  }

  async function render() {
    const fresh = await get("/api/virtual-keys");
    fill(
      listEl,
      table(
        [
          { label: "Name", value: (k) => k.name },
          { label: "Prefix", value: (k) => h("code", {}, k.value_prefix) },
          { label: "Team", value: (k) => (k.team_id ? teamName.get(k.team_id) || k.team_id : "–") },
          { label: "Active", value: (k) => (k.is_active ? "yes" : "no") },
          { label: "Created", value: (k) => when(k.created_at) },
          {
            label: "Actions",
            value: (k) =>
              h(
                "div",
                { class: "row" },
                h("button", { type: "button", onclick: () => showUsage(k).catch((e) => toast(e.message, true)) }, "Usage"),
                managesKeys() ? h("button", { type: "button", onclick: () => setActive(k, !k.is_active) }, k.is_active ? "Disable" : "Enable") : null,
                managesKeys() ? h("button", { type: "button", class: "danger", onclick: () => remove(k) }, "Delete") : null,
              ),
          },
        ],
        fresh.virtual_keys,
        { empty: "No virtual key yet.", caption: "Virtual keys" },
      ),
    );
  }

  const listEl = h("div");
  fill(el, h("h1", {}, "Virtual keys"), form, created, listEl, usage);
  await render();
}
