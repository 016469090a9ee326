// Virtual keys: the list (a team admin sees their team's, a member their own), creation (the
// value is shown once), editing (name, enabled, expiry, provider configs with their allowed
// models, keys and limits, the key's budgets and limits), deleting, with each key's live usage.

import { api, get, managesKeys, isAdmin, session } from "../api.js";
import { h, fill, table, field, select, checkbox, toast, when, errorText, errorSlot, formError, lines, commas, focusOpener } from "../dom.js";
import { limitsFields, usageBars } from "../limits.js";
import { contentFields } from "../content.js";
import { toolsField } from "../tools.js";

/** An RFC 3339 instant as a `datetime-local` value in the browser's time zone. */
function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The `data-opener` of a key's Edit button (see `focusOpener`). */
const opener = (k) => `virtual-key:${k.id}`;

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
      toast(errorText(err), true);
    }
  }

  async function remove(k) {
    if (!confirm(`Delete the virtual key "${k.name}"? Requests with it will be refused.`)) return;
    try {
      await api("DELETE", `/api/virtual-keys/${k.id}`);
      toast(`${k.name} deleted`);
      fill(usage);
      await render();
    } catch (err) {
      toast(errorText(err), true);
    }
  }

  async function showUsage(k) {
    const u = await get(`/api/virtual-keys/${k.id}/usage`);
    fill(usage, h("div", { class: "panel" }, h("h2", {}, `Usage of ${k.name}`), usageBars(u), h("p", {}, h("a", { href: `#/logs?virtual_key_id=${k.id}` }, "Its requests in the log"))));
  }

  async function edit(k) {
    const [u, providerList, providerKeys] = await Promise.all([
      get(`/api/virtual-keys/${k.id}/usage`).catch(() => null),
      get("/api/providers"),
      get("/api/keys"),
    ]);
    fill(usage, editor(k, u, providerList.providers.map((p) => p.name), providerKeys.keys));
    usage.querySelector("h2").focus();
  }

  /** A provider config row: provider, weight, allowed models, the provider keys it may use
   *  (none ticked: all), and its own limits. */
  function configRow(c, providerNames, providerKeys, rows) {
    const row = {};
    const provider = h("select", {}, providerNames.map((n) => h("option", { value: n, selected: n === c.provider }, n)));
    const weight = h("input", { type: "number", min: "0", step: "any", value: String(c.weight ?? 1) });
    const models = h("textarea", { rows: "2", cols: "40", spellcheck: "false" }, (c.allowed_models || ["*"]).join("\n"));
    const keyBox = h("fieldset", { class: "key-ids" });
    const chosen = new Set((c.key_ids || []).filter((x) => x !== "*"));
    const drawKeys = () => {
      const of = providerKeys.filter((pk) => pk.provider === provider.value);
      fill(
        keyBox,
        h("legend", {}, `Keys of ${provider.value} it may use (none ticked: all)`),
        of.length ? of.map((pk) => checkbox(pk.name, { value: pk.id, checked: chosen.has(pk.id) })) : h("span", { class: "hint" }, "This provider has no key."),
      );
    };
    provider.addEventListener("change", () => {
      chosen.clear();
      drawKeys();
    });
    drawKeys();
    const limits = limitsFields(c, { what: "this provider config", legend: "Its budgets and limits" });
    const removeButton = h("button", { type: "button", class: "danger", onclick: () => {
      rows.splice(rows.indexOf(row), 1);
      row.el.remove();
    } }, "Remove provider config");
    Object.assign(row, {
      el: h(
        "fieldset",
        { class: "panel" },
        h("legend", {}, "Provider config"),
        h(
          "div",
          { class: "row" },
          h("label", {}, "Provider", provider),
          h("label", {}, "Weight", weight),
          h("label", {}, "Allowed models (one pattern a line: names, * globs, regex:EXPR; * for all)", models),
        ),
        keyBox,
        h("details", {}, h("summary", {}, "Limits of this provider config"), limits.el),
        removeButton,
      ),
      read(i) {
        const at = `provider_configs[${i}]`;
        provider.dataset.path = `${at}.provider`;
        weight.dataset.path = `${at}.weight`;
        models.dataset.path = `${at}.allowed_models`;
        keyBox.dataset.path = `${at}.key_ids`;
        const ids = [...keyBox.querySelectorAll("input:checked")].map((x) => x.value);
        const allowed = lines(models.value);
        return {
          provider: provider.value,
          weight: weight.value.trim() === "" ? null : Number(weight.value),
          allowed_models: allowed.length ? allowed : ["*"],
          key_ids: ids.length ? ids : ["*"],
          ...limits.read(`${at}.`),
        };
      },
    });
    rows.push(row);
    return row;
  }

  function editor(k, u, providerNames, providerKeys) {
    const name = h("input", { required: true, value: k.name, "data-path": "name" });
    const description = h("input", { value: k.description || "", "data-path": "description" });
    const active = checkbox("Enabled", { checked: k.is_active, "data-path": "is_active" });
    const expires = h("input", { type: "datetime-local", value: localInput(k.expires_at), "data-path": "expires_at" });
    const failOpen = checkbox("Fail open when the control plane is unreachable", { checked: k.fail_open, "data-path": "fail_open" });
    const fallbacks = h("input", { value: (k.fallbacks || []).join(", "), size: "50", "data-path": "fallbacks" });
    const limits = limitsFields(k, { legend: "Budgets and limits of the key" });
    const content = isAdmin() ? contentFields(k.content_logging, { forKey: true }) : null;
    const tools = toolsField(k.mcp_tools, { owner: "this key" });
    const rows = [];
    const configs = h("div", {});
    for (const c of k.provider_configs || []) configs.append(configRow(c, providerNames, providerKeys, rows).el);
    const addConfig = h(
      "button",
      {
        type: "button",
        disabled: !providerNames.length,
        onclick: () => {
          const row = configRow({ provider: providerNames[0], weight: 1 }, providerNames, providerKeys, rows);
          configs.append(row.el);
          row.el.querySelector("select").focus();
        },
      },
      "Add a provider config",
    );

    const form = h(
      "form",
      {
        "aria-label": `Edit virtual key ${k.name}`,
        onsubmit: async (e) => {
          e.preventDefault();
          const body = {
            name: name.value.trim(),
            description: description.value.trim() || null,
            is_active: active.querySelector("input").checked,
            fail_open: failOpen.querySelector("input").checked,
            fallbacks: commas(fallbacks.value),
            provider_configs: rows.map((r, i) => r.read(i)),
            ...limits.read(),
          };
          if (content) body.content_logging = content.read();
          body.mcp_tools = tools.read();
          // Sent only when changed: the stored instant may have passed, and the API refuses a
          // past one.
          if (expires.value !== localInput(k.expires_at)) {
            body.expires_at = expires.value ? new Date(expires.value).toISOString() : null;
          }
          try {
            await api("PUT", `/api/virtual-keys/${k.id}`, body);
            toast(`${body.name} saved`);
            fill(usage);
            await render();
            focusOpener(opener(k));
          } catch (err) {
            formError(form, err);
          }
        },
      },
      errorSlot(),
      h(
        "div",
        { class: "row" },
        h("label", {}, "Name", name),
        h("label", {}, "Description", description),
        active,
        h("label", {}, "Expires (your time zone; empty: never)", expires),
      ),
      h("h3", {}, "Providers and models"),
      h("p", { class: "hint" }, "No provider config: every provider, model and key. With configs, only their providers and allowed models."),
      configs,
      addConfig,
      h(
        "div",
        { class: "row" },
        h("label", {}, "Fallbacks (provider/model, comma-separated, tried in order)", fallbacks),
        failOpen,
      ),
      limits.el,
      content ? content.el : null,
      tools.el,
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit", class: "primary" }, "Save"),
        h("button", { type: "button", onclick: () => {
          fill(usage);
          focusOpener(opener(k));
        } }, "Cancel"),
      ),
    );
    return h(
      "section",
      { class: "panel", "aria-label": `Edit ${k.name}` },
      h("h2", { tabindex: "-1" }, `Edit virtual key ${k.name}`),
      h("h3", {}, "Usage now"),
      usageBars(u),
      form,
    );
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
          { label: "Expires", value: (k) => (k.expires_at ? when(k.expires_at) : "never") },
          { label: "Created", value: (k) => when(k.created_at) },
          {
            label: "Actions",
            value: (k) =>
              h(
                "div",
                { class: "row" },
                h("button", { type: "button", onclick: () => showUsage(k).catch((e) => toast(errorText(e), true)) }, "Usage"),
                managesKeys() ? h("button", { type: "button", "aria-label": `Edit ${k.name}`, "data-opener": opener(k), onclick: () => edit(k).catch((e) => toast(errorText(e), true)) }, "Edit") : null,
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
