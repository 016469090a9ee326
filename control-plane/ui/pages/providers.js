// Providers and their keys. Admins add a provider, edit its network settings, delete it; add a
// key (as the API's JSON, so every provider type and option is available), edit one in a form,
// delete one. Credentials are never shown: the page shows what the API returns for them
// (`<redacted>` for a stored secret, or its `env.NAME` reference), and sending `<redacted>` back
// keeps the stored secret.

import { api, get, isAdmin } from "../api.js";
import { h, fill, table, checkbox, toast, when, errorText, errorSlot, formError, REDACTED, lines, focusOpener } from "../dom.js";

const TEMPLATES = {
  bedrock: { name: "prod", models: ["*"], bedrock_key_config: { region: "us-east-1", access_key: "env.AWS_ACCESS_KEY_ID", secret_key: "env.AWS_SECRET_ACCESS_KEY" } },
  anthropic: { name: "prod", models: ["*"], value: "env.ANTHROPIC_API_KEY" },
  openai: { name: "prod", models: ["*"], value: "env.OPENAI_API_KEY" },
  vertex: { name: "prod", models: ["*"], vertex_key_config: { project_id: "my-project", region: "us-east5", auth_credentials: "env.GOOGLE_APPLICATION_CREDENTIALS_JSON" } },
};

/** A provider's network settings the console edits (the rest of `network_config` is sent back
 *  as the API returned it). */
const NETWORK = [
  ["default_request_timeout_in_seconds", "Request timeout (s)"],
  ["connect_timeout_in_seconds", "Connect timeout (s)"],
  ["response_header_timeout_in_seconds", "Response head timeout, streaming (s)"],
  ["stream_idle_timeout_in_seconds", "Stream idle timeout (s)"],
  ["max_retries", "Retries"],
  ["retry_backoff_initial", "First backoff (ms)"],
  ["retry_backoff_max", "Longest backoff (ms)"],
];

/** The credential fields of a key, by provider kind: `[path, label, secret]`. */
const CREDENTIALS = {
  anthropic: [["value", "API key", true]],
  openai: [["value", "API key (optional with a base URL)", true]],
  bedrock: [
    ["value", "Bedrock API key (instead of AWS credentials)", true],
    ["bedrock_key_config.access_key", "AWS access key id", true],
    ["bedrock_key_config.secret_key", "AWS secret access key", true],
    ["bedrock_key_config.session_token", "AWS session token", true],
    ["bedrock_key_config.region", "Region", false],
    ["bedrock_key_config.role_arn", "Role to assume (ARN)", false],
    ["bedrock_key_config.external_id", "External id", true],
    ["bedrock_key_config.session_name", "Session name", false],
    ["bedrock_key_config.arn", "ARN prefix of alias targets", false],
  ],
  vertex: [
    ["vertex_key_config.project_id", "Project id", false],
    ["vertex_key_config.region", "Region", false],
    ["vertex_key_config.auth_credentials", "Service account key (JSON)", true],
    ["vertex_key_config.token_uri", "Token URI", false],
  ],
};

const at = (obj, path) => path.split(".").reduce((o, k) => (o == null ? o : o[k]), obj);

export async function providers(el) {
  const list = await get("/api/providers");
  const keyLists = await Promise.all(list.providers.map((p) => get(`/api/providers/${encodeURIComponent(p.name)}/keys`)));
  const reload = () => providers(el);

  const addProvider = async (e) => {
    e.preventDefault();
    const name = String(new FormData(e.target).get("provider")).trim();
    try {
      await api("POST", "/api/providers", { provider: name });
      toast(`Provider ${name} added`);
      await reload();
    } catch (err) {
      toast(errorText(err), true);
    }
  };

  const keyForm = (p) => {
    const text = h("textarea", { name: "config", rows: "8", cols: "70", spellcheck: "false", "aria-label": `New key of ${p.name} (JSON)` }, JSON.stringify(TEMPLATES[p.kind] || TEMPLATES.openai, null, 2));
    const form = h(
      "form",
      {
        class: "panel",
        "aria-label": `New key of ${p.name}`,
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
            await reload();
          } catch (err) {
            formError(form, err);
          }
        },
      },
      errorSlot(),
      h("p", { class: "hint" }, "Secrets as ", h("code", {}, "env.NAME"), " references (resolved by the gateway when used) or literal values (encrypted at rest, never shown again)."),
      text,
      h("div", {}, h("button", { type: "submit", class: "primary" }, `Add key to ${p.name}`)),
    );
    return form;
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
    list.providers.map((p, i) => {
      const editor = h("div", { "aria-live": "polite" });
      // An editor closes (Cancel, or saved and the page drawn again) with focus back on the
      // button that opened it.
      const open = (make, opener) => {
        const saved = async () => {
          await reload();
          focusOpener(opener);
        };
        const close = () => {
          fill(editor);
          focusOpener(opener);
        };
        fill(editor, make(saved, close));
        editor.querySelector("h3").focus();
      };
      const edits = {
        edit: (k) => open((saved, close) => keyEditor(p, k, saved, close), keyOpener(p, k)),
        remove: (k) => removeKey(p, k, reload),
      };
      return h(
        "section",
        { "aria-label": p.name },
        h("h2", {}, `${p.name} `, h("span", { class: "badge" }, p.kind)),
        networkSummary(p),
        isAdmin()
          ? h(
              "div",
              { class: "row" },
              h("button", { type: "button", "data-opener": `provider:${p.name}`, onclick: () => open((saved, close) => providerEditor(p, saved, close), `provider:${p.name}`) }, `Edit ${p.name} settings`),
              h("button", { type: "button", class: "danger", onclick: () => removeProvider(p, keyLists[i].keys.length, reload) }, `Delete provider ${p.name}`),
            )
          : null,
        table(
          [
            { label: "Key", value: (k) => k.name },
            { label: "Models", value: (k) => (k.models || []).join(", ") || "none" },
            { label: "Aliases", value: (k) => Object.entries(k.aliases || {}).map(([a, m]) => `${a} → ${m}`).join("; ") || "–" },
            { label: "Weight", num: true, value: (k) => String(k.weight ?? 1) },
            { label: "Enabled", value: (k) => (k.enabled ? "yes" : "no") },
            { label: "Credentials", value: (k) => credentialSummary(p, k) },
            { label: "Created", value: (k) => when(k.created_at) },
            ...(isAdmin() ? [{ label: "Actions", value: (k) => keyActions(p, k, edits) }] : []),
          ],
          keyLists[i].keys,
          { empty: "No key: requests to this provider fail until one is added.", caption: `Keys of ${p.name}` },
        ),
        editor,
        isAdmin() ? keyForm(p) : null,
      );
    }),
  );
}

/**
 * The actions of one provider key (the last cell of its row): test it against its provider
 * (`POST /api/providers/{name}/keys/{key_id}/test`: one `max_tokens` 1 request through a data
 * plane; the outcome shows next to the buttons), edit and delete.
 */
export function keyActions(p, k, { edit, remove }) {
  const outcome = h("span", { class: "hint key-test", role: "status" });
  const test = h("button", { type: "button", "aria-label": `Test key ${k.name} of ${p.name}` }, "Test");
  test.addEventListener("click", async () => {
    test.disabled = true;
    outcome.className = "hint key-test";
    fill(outcome, "Testing…");
    try {
      const r = await api("POST", `/api/providers/${encodeURIComponent(p.name)}/keys/${encodeURIComponent(k.id)}/test`);
      outcome.className = r.ok ? "hint key-test ok" : "error key-test";
      fill(outcome, testOutcome(r));
    } catch (err) {
      outcome.className = "error key-test";
      fill(outcome, errorText(err));
    } finally {
      test.disabled = false;
    }
  });
  return h(
    "div",
    { class: "row key-actions" },
    k.enabled === false ? null : test,
    h("button", { type: "button", "aria-label": `Edit key ${k.name} of ${p.name}`, "data-opener": keyOpener(p, k), onclick: () => edit(k) }, "Edit"),
    h("button", { type: "button", class: "danger", "aria-label": `Delete key ${k.name} of ${p.name}`, onclick: () => remove(k) }, "Delete"),
    outcome,
  );
}

/** The `data-opener` of a provider key's Edit button (see `focusOpener`). */
const keyOpener = (p, k) => `provider-key:${p.name}:${k.id}`;

/** One line for a key test's answer: works (status, model, latency) or the provider's error. */
export function testOutcome(r) {
  const where = `${r.model} via ${r.data_plane}, ${r.latency_ms} ms`;
  if (r.ok) return `Works: ${r.status} (${where})`;
  const e = r.error || {};
  const status = r.status ? `${r.status} ` : "no answer: ";
  return `Fails: ${status}${e.class || ""}${e.message ? ` — ${e.message}` : ""} (${where})`;
}

/** What the API says of a key's credentials: `<redacted>` (a stored secret), `env.NAME`, or
 *  nothing; and the references the env allowlist refuses. */
function credentialSummary(p, k) {
  const parts = [];
  for (const [path, label] of CREDENTIALS[p.kind] || []) {
    const v = at(k, path);
    if (v) parts.push(`${label}: ${v}`);
  }
  return h(
    "div",
    {},
    parts.length ? parts.join("; ") : "none",
    (k.refused_env_references || []).length ? h("p", { class: "error" }, `Refused env references: ${k.refused_env_references.join(", ")}`) : null,
  );
}

function networkSummary(p) {
  const nc = p.network_config || {};
  const set = NETWORK.filter(([k]) => nc[k] !== null && nc[k] !== undefined).map(([k, label]) => `${label} ${nc[k]}`);
  const headers = Object.keys(nc.extra_headers || {});
  return h(
    "p",
    { class: "hint" },
    `Endpoint: ${nc.base_url || "the provider's default"}`,
    set.length ? ` · ${set.join(" · ")}` : "",
    headers.length ? ` · extra headers: ${headers.join(", ")}` : "",
  );
}

async function removeProvider(p, keyCount, reload) {
  if (!confirm(`Delete the provider ${p.name} and its ${keyCount} key(s)? Refused while a virtual key names it.`)) return;
  try {
    await api("DELETE", `/api/providers/${encodeURIComponent(p.name)}`);
    toast(`Provider ${p.name} deleted`);
    await reload();
  } catch (err) {
    toast(errorText(err), true);
  }
}

async function removeKey(p, k, reload) {
  if (!confirm(`Delete the key ${k.name} of ${p.name}? Requests stop using it at once.`)) return;
  try {
    await api("DELETE", `/api/providers/${encodeURIComponent(p.name)}/keys/${k.id}`);
    toast(`Key ${k.name} deleted`);
    await reload();
  } catch (err) {
    toast(errorText(err), true);
  }
}

/** A provider's network settings: endpoint, timeouts, retries, extra headers (their values as
 *  the API shows them; `<redacted>` keeps a stored one). A given `network_config` replaces the
 *  stored one, so the whole block is sent. */
function providerEditor(p, reload, close) {
  const nc = p.network_config || {};
  const baseUrl = h("input", { type: "url", size: "50", value: nc.base_url || "", "data-path": "network_config.base_url" });
  const numbers = NETWORK.map(([k, label]) => [k, h("input", { type: "number", min: "0", step: "1", value: nc[k] ?? "", "data-path": `network_config.${k}` }), label]);
  const headerRows = h("div", {});
  const addHeader = (name, value) => {
    const row = h(
      "div",
      { class: "row header" },
      h("label", {}, "Header name", h("input", { class: "header-name", value: name || "" })),
      h("label", {}, "Value (a secret, env.NAME, or <redacted> to keep)", h("input", { class: "header-value", autocomplete: "off", spellcheck: "false", size: "40", value: value || "" })),
    );
    row.append(h("button", { type: "button", class: "danger", onclick: () => row.remove() }, "Remove header"));
    headerRows.append(row);
    return row;
  };
  for (const [name, value] of Object.entries(nc.extra_headers || {})) addHeader(name, value);
  const form = h(
    "form",
    {
      "aria-label": `Settings of ${p.name}`,
      onsubmit: async (e) => {
        e.preventDefault();
        const network = { ...nc, base_url: baseUrl.value.trim() || null, extra_headers: {} };
        for (const [k, input] of numbers) network[k] = input.value.trim() === "" ? null : Number(input.value);
        for (const row of headerRows.querySelectorAll(".header")) {
          const name = row.querySelector(".header-name").value.trim();
          const value = row.querySelector(".header-value");
          if (!name) continue;
          value.dataset.path = `network_config.extra_headers.${name}`;
          network.extra_headers[name] = value.value.trim();
        }
        try {
          await api("PUT", `/api/providers/${encodeURIComponent(p.name)}`, { network_config: network });
          toast(`${p.name} saved`);
          await reload();
        } catch (err) {
          formError(form, err);
        }
      },
    },
    errorSlot(),
    h("label", {}, "Base URL (empty: the provider's default endpoint)", baseUrl),
    h("div", { class: "row" }, numbers.map(([, input, label]) => h("label", {}, label, input))),
    h("h4", {}, "Extra headers sent upstream"),
    headerRows,
    h("button", { type: "button", onclick: () => addHeader("", "").querySelector("input").focus() }, "Add a header"),
    h(
      "div",
      { class: "row" },
      h("button", { type: "submit", class: "primary" }, `Save ${p.name}`),
      h("button", { type: "button", onclick: close }, "Cancel"),
    ),
  );
  return h("section", { class: "panel", "aria-label": `Edit ${p.name}` }, h("h3", { tabindex: "-1" }, `Settings of ${p.name}`), form);
}

/** A key's form: name, description, enabled, weight, models, aliases, and the credentials of
 *  its provider's kind, each filled with what the API returned (`<redacted>`, `env.NAME`, or a
 *  plain setting). A secret left as `<redacted>` keeps the stored one; an empty field removes it. */
function keyEditor(p, k, reload, close) {
  const input = (path, value, attrs = {}) => h("input", { value: value ?? "", "data-path": path, ...attrs });
  const name = input("name", k.name, { required: true });
  const description = input("description", k.description, { size: "40" });
  const enabledBox = checkbox("Enabled", { checked: k.enabled, "data-path": "enabled" });
  const enabled = enabledBox.querySelector("input");
  const weight = input("weight", String(k.weight ?? 1), { type: "number", min: "0", step: "any", required: true });
  const models = h("textarea", { rows: "3", cols: "40", spellcheck: "false", "data-path": "models" }, (k.models || []).join("\n"));
  const aliases = h(
    "textarea",
    { rows: "3", cols: "60", spellcheck: "false", "data-path": "aliases" },
    Object.entries(k.aliases || {}).map(([a, m]) => `${a} = ${m}`).join("\n"),
  );
  const creds = (CREDENTIALS[p.kind] || []).map(([path, label, secret]) => {
    const attrs = { autocomplete: "off", spellcheck: "false", size: "40" };
    const control = path.endsWith("auth_credentials")
      ? h("textarea", { rows: "2", cols: "60", "data-path": path, ...attrs }, at(k, path) || "")
      : input(path, at(k, path), attrs);
    return { path, control, el: h("label", {}, secret ? `${label} (secret)` : label, control) };
  });

  const form = h(
    "form",
    {
      "aria-label": `Edit key ${k.name} of ${p.name}`,
      onsubmit: async (e) => {
        e.preventDefault();
        const body = {
          name: name.value.trim(),
          description: description.value.trim() || null,
          enabled: enabled.checked,
          weight: Number(weight.value),
          models: lines(models.value),
          aliases: {},
        };
        for (const line of lines(aliases.value)) {
          const eq = line.indexOf("=");
          if (eq < 0) {
            return formError(form, { field: "aliases", message: `"${line}" is not "alias = model id"` });
          }
          body.aliases[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
        }
        // Credentials: the blocks of this kind, without their empty fields (null: no block).
        const blocks = {};
        for (const { path, control } of creds) {
          const v = control.value.trim();
          const [block, leaf] = path.includes(".") ? path.split(".") : [null, path];
          if (!block) body.value = v || null;
          else {
            blocks[block] = blocks[block] || {};
            if (v) blocks[block][leaf] = v;
          }
        }
        for (const [block, fields] of Object.entries(blocks)) body[block] = Object.keys(fields).length ? fields : null;
        try {
          await api("PUT", `/api/providers/${encodeURIComponent(p.name)}/keys/${k.id}`, body);
          toast(`Key ${body.name} saved`);
          await reload();
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
      h("label", {}, "Weight", weight),
      enabledBox,
    ),
    h(
      "div",
      { class: "row" },
      h("label", {}, "Models it serves (one a line; * for all; none: no model)", models),
      h("label", {}, "Aliases (one a line: requested name = upstream model id)", aliases),
    ),
    h("h4", {}, "Credentials"),
    h("p", { class: "hint" }, `Each shows what the API returns: ${REDACTED} for a stored secret (sent back, it keeps it), or its env.NAME reference. Type env.NAME or a new value to replace one; empty removes it.`),
    h("div", { class: "row" }, creds.map((c) => c.el)),
    h(
      "div",
      { class: "row" },
      h("button", { type: "submit", class: "primary" }, "Save key"),
      h("button", { type: "button", onclick: close }, "Cancel"),
    ),
  );
  return h("section", { class: "panel", "aria-label": `Edit key ${k.name}` }, h("h3", { tabindex: "-1" }, `Key ${k.name} of ${p.name}`), form);
}
