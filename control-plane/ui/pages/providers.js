// Providers and their keys. Credentials are never shown (the API returns none); a key's config
// is entered as the API's JSON, so every provider type and option is available.

import { api, get, isAdmin } from "../api.js";
import { h, fill, table, toast, when, errorText } from "../dom.js";

const TEMPLATES = {
  bedrock: { name: "prod", models: ["*"], bedrock_key_config: { region: "us-east-1", access_key: "env.AWS_ACCESS_KEY_ID", secret_key: "env.AWS_SECRET_ACCESS_KEY" } },
  anthropic: { name: "prod", models: ["*"], value: "env.ANTHROPIC_API_KEY" },
  openai: { name: "prod", models: ["*"], value: "env.OPENAI_API_KEY" },
  vertex: { name: "prod", models: ["*"], vertex_key_config: { project_id: "my-project", region: "us-east5", auth_credentials: "env.GOOGLE_APPLICATION_CREDENTIALS_JSON" } },
};

export async function providers(el) {
  const list = await get("/api/providers");
  const keyLists = await Promise.all(list.providers.map((p) => get(`/api/providers/${encodeURIComponent(p.name)}/keys`)));

  const addProvider = async (e) => {
    e.preventDefault();
    const name = String(new FormData(e.target).get("provider")).trim();
    try {
      await api("POST", "/api/providers", { provider: name });
      toast(`Provider ${name} added`);
      await providers(el);
    } catch (err) {
      toast(errorText(err), true);
    }
  };

  const keyForm = (p) => {
    const text = h("textarea", { name: "config", rows: "8", cols: "70", spellcheck: "false", "aria-label": `New key of ${p.name} (JSON)` }, JSON.stringify(TEMPLATES[p.kind] || TEMPLATES.openai, null, 2));
    return h(
      "form",
      {
        class: "panel",
        onsubmit: async (e) => {
          e.preventDefault();
          let body;
          try {
            body = JSON.parse(text.value);
          } catch (err) {
            return toast(`Not JSON: ${err.message}`, true);
          }
          try {
            await api("POST", `/api/providers/${encodeURIComponent(p.name)}/keys`, body);
            toast("Key added");
            await providers(el);
          } catch (err) {
            toast(errorText(err), true);
          }
        },
      },
      h("p", { class: "hint" }, "Secrets as ", h("code", {}, "env.NAME"), " references (resolved by the gateway when used) or literal values (encrypted at rest, never shown again)."),
      text,
      h("div", {}, h("button", { type: "submit", class: "primary" }, `Add key to ${p.name}`)),
    );
  };

  fill(
    el,
    h("h1", {}, "Providers"),
    isAdmin()
      ? h(
          "form",
          { class: "inline", "aria-label": "New provider", onsubmit: addProvider },
          h("label", {}, "Provider", h("select", { name: "provider" }, ["bedrock", "anthropic", "vertex", "openai"].map((n) => h("option", { value: n }, n)))),
          h("button", { type: "submit", class: "primary" }, "Add provider"),
        )
      : null,
    list.providers.length ? null : h("p", { class: "empty" }, "No provider yet."),
    list.providers.map((p, i) =>
      h(
        "section",
        { "aria-label": p.name },
        h("h2", {}, `${p.name} `, h("span", { class: "badge" }, p.kind)),
        table(
          [
            { label: "Key", value: (k) => k.name },
            { label: "Models", value: (k) => (k.models || []).join(", ") },
            { label: "Aliases", value: (k) => Object.entries(k.aliases || {}).map(([a, m]) => `${a} → ${m}`).join("; ") || "–" },
            { label: "Weight", num: true, value: (k) => String(k.weight ?? 1) },
            { label: "Enabled", value: (k) => (k.enabled ? "yes" : "no") },
            { label: "Created", value: (k) => when(k.created_at) },
          ],
          keyLists[i].keys,
          { empty: "No key: requests to this provider fail until one is added.", caption: `Keys of ${p.name}` },
        ),
        isAdmin() ? keyForm(p) : null,
      ),
    ),
  );
}
