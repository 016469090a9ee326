// The MCP gateway: the MCP servers whose tools the gateway serves at `/mcp` (configuration
// readers see them; admins add, edit and delete them, as the API's JSON so every transport and
// option is available) and the recent tool calls (every role, narrowed by the API to what the
// caller may see). Secrets are never shown: `env` and `headers` values appear as the API returns
// them (`<redacted>` for a stored literal, or its `env.NAME` reference), and sending `<redacted>`
// back keeps the stored value. The tool allowlists of keys and teams are edited in their own
// editors (`tools.js`).

import { api, get, isAdmin, readsConfig, withQuery } from "../api.js";
import { h, fill, table, toast, when, ms, statusBadge, errorText, errorSlot, formError, REDACTED, focusOpener } from "../dom.js";

const TEMPLATES = {
  stdio: {
    name: "github",
    transport: "stdio",
    command: "npx",
    args: ["-y", "@modelcontextprotocol/server-github"],
    env: { GITHUB_PERSONAL_ACCESS_TOKEN: "env.GITHUB_TOKEN" },
    allowed_tools: [],
  },
  http: {
    name: "docs",
    transport: "http",
    url: "https://mcp.example.com/mcp",
    headers: { Authorization: "Bearer …" },
    allowed_tools: [],
  },
};

/** The fields of a server the editor sends back (what the API returned, minus read-only ones). */
const EDITABLE = ["transport", "command", "args", "env", "cwd", "url", "headers", "allowed_tools", "call_timeout_ms", "enabled"];

export async function mcp(el) {
  const servers = readsConfig() ? await get("/api/mcp/servers") : null;
  const calls = await get(withQuery("/api/mcp/calls", { limit: 50 }));
  const reload = () => mcp(el);
  const editor = h("div", { "aria-live": "polite" });

  const open = (s, opener) => {
    const close = () => {
      fill(editor);
      focusOpener(opener);
    };
    const saved = async () => {
      await reload();
      focusOpener(opener);
    };
    fill(editor, serverEditor(s, saved, close));
    editor.querySelector("h3").focus();
  };

  fill(
    el,
    h("h1", {}, "MCP"),
    h(
      "p",
      { class: "hint" },
      "Clients call the tools of these servers at ",
      h("code", {}, "/mcp"),
      " with a virtual key, as ",
      h("code", {}, "<server>__<tool>"),
      ". A key's and its team's MCP tool allowlists (set in their editors) narrow what it may call.",
    ),
    servers
      ? [
          h("h2", {}, "Servers"),
          table(
            [
              { label: "Server", value: (s) => s.name },
              { label: "Transport", value: (s) => h("span", { class: "badge" }, s.transport) },
              { label: "Runs / reaches", value: (s) => (s.transport === "stdio" ? [s.command, ...(s.args || [])].join(" ") : s.url) },
              { label: "Secrets", value: (s) => secretSummary(s) },
              { label: "Tools served", value: (s) => ((s.allowed_tools || []).length ? s.allowed_tools.join(", ") : "all") },
              { label: "Call timeout", value: (s) => (s.call_timeout_ms ? ms(s.call_timeout_ms) : "default") },
              { label: "Enabled", value: (s) => (s.enabled ? "yes" : "no") },
              ...(isAdmin()
                ? [
                    {
                      label: "Actions",
                      value: (s) =>
                        h(
                          "div",
                          { class: "row" },
                          h("button", { type: "button", "data-opener": `mcp:${s.name}`, "aria-label": `Edit MCP server ${s.name}`, onclick: () => open(s, `mcp:${s.name}`) }, "Edit"),
                          h("button", { type: "button", class: "danger", "aria-label": `Delete MCP server ${s.name}`, onclick: () => removeServer(s, reload) }, "Delete"),
                        ),
                    },
                  ]
                : []),
            ],
            servers.servers,
            { empty: "No MCP server yet.", caption: "MCP servers" },
          ),
          editor,
          isAdmin() ? addForm(reload) : null,
        ]
      : null,
    h("h2", {}, "Recent tool calls"),
    table(
      [
        { label: "Time", value: (c) => when(c.started_at) },
        { label: "Key", value: (c) => c.virtual_key.name || c.virtual_key.id },
        { label: "Server", value: (c) => c.server },
        { label: "Tool", value: (c) => c.tool },
        { label: "Status", value: (c) => h("span", {}, statusBadge(c.status), c.error_class ? ` ${c.error_class}` : "") },
        { label: "Latency", num: true, value: (c) => ms(c.latency_ms) },
      ],
      calls.calls,
      { empty: "No tool call in the last 24 hours.", caption: "Tool calls, newest first" },
    ),
  );
}

/** What the API says of a server's secrets (`env` or `headers`): names with `<redacted>` or
 *  `env.NAME`; and the references the env allowlist refuses. */
function secretSummary(s) {
  const map = s.transport === "stdio" ? s.env : s.headers;
  const parts = Object.entries(map || {}).map(([k, v]) => `${k}: ${v}`);
  return h(
    "div",
    {},
    parts.length ? parts.join("; ") : "none",
    (s.refused_env_references || []).length ? h("p", { class: "error" }, `Refused env references: ${s.refused_env_references.join(", ")}`) : null,
  );
}

function addForm(reload) {
  const kind = h("select", { "aria-label": "Transport of the template" }, ["stdio", "http"].map((t) => h("option", { value: t }, t)));
  const text = h("textarea", { rows: "10", cols: "70", spellcheck: "false", "aria-label": "New MCP server (JSON)" }, JSON.stringify(TEMPLATES.stdio, null, 2));
  kind.addEventListener("change", () => {
    text.value = JSON.stringify(TEMPLATES[kind.value], null, 2);
  });
  const form = h(
    "form",
    {
      class: "panel",
      "aria-label": "New MCP server",
      onsubmit: async (e) => {
        e.preventDefault();
        let body;
        try {
          body = JSON.parse(text.value);
        } catch (err) {
          return toast(`Not JSON: ${err.message}`, true);
        }
        try {
          await api("POST", "/api/mcp/servers", body);
          toast(`MCP server ${body.name} added`);
          await reload();
        } catch (err) {
          formError(form, err);
        }
      },
    },
    errorSlot(),
    h("h3", {}, "Add an MCP server"),
    h("label", {}, "Template", kind),
    h("p", { class: "hint" }, "Values of ", h("code", {}, "env"), " and ", h("code", {}, "headers"), " are secrets: ", h("code", {}, "env.NAME"), " references (resolved by the data plane) or literal values (encrypted at rest, never shown again)."),
    text,
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Add server")),
  );
  return form;
}

/** A server's JSON as the API returned it (secrets `<redacted>`), edited and sent back: an entry
 *  left `<redacted>` keeps its stored value, one left out is removed. */
function serverEditor(s, saved, close) {
  const shown = {};
  for (const k of EDITABLE) if (s[k] !== undefined) shown[k] = s[k];
  const text = h("textarea", { rows: "12", cols: "70", spellcheck: "false", "aria-label": `MCP server ${s.name} (JSON)` }, JSON.stringify(shown, null, 2));
  const form = h(
    "form",
    {
      "aria-label": `Edit MCP server ${s.name}`,
      onsubmit: async (e) => {
        e.preventDefault();
        let body;
        try {
          body = JSON.parse(text.value);
        } catch (err) {
          return toast(`Not JSON: ${err.message}`, true);
        }
        try {
          await api("PUT", `/api/mcp/servers/${encodeURIComponent(s.name)}`, body);
          toast(`${s.name} saved`);
          await saved();
        } catch (err) {
          formError(form, err);
        }
      },
    },
    errorSlot(),
    h("p", { class: "hint" }, `${REDACTED} keeps a stored secret; a new value or env.NAME replaces it; an entry left out is removed.`),
    text,
    h(
      "div",
      { class: "row" },
      h("button", { type: "submit", class: "primary" }, `Save ${s.name}`),
      h("button", { type: "button", onclick: close }, "Cancel"),
    ),
  );
  return h("section", { class: "panel", "aria-label": `Edit ${s.name}` }, h("h3", { tabindex: "-1" }, `MCP server ${s.name}`), form);
}

async function removeServer(s, reload) {
  if (!confirm(`Delete the MCP server ${s.name}? Its tools stop being served; its past calls stay in the log.`)) return;
  try {
    await api("DELETE", `/api/mcp/servers/${encodeURIComponent(s.name)}`);
    toast(`MCP server ${s.name} deleted`);
    await reload();
  } catch (err) {
    toast(errorText(err), true);
  }
}
