// Settings (admins): single sign-on (`/api/sso`) and the group mappings that turn identity
// provider groups into teams and roles (`/api/group-mappings`). The client secret is write-only:
// the page shows what the API returns for it (`<redacted>`, an `env.NAME` reference, or none),
// never a value.

import { api, get } from "../api.js";
import { h, fill, field, checkbox, toast, errorSlot, formError, REDACTED, commas } from "../dom.js";

const ROLES = ["member", "viewer", "team-admin", "admin"];
const words = (text) => text.split(/\s+/).filter(Boolean);

export async function settings(el) {
  const [sso, mappings, teams] = await Promise.all([get("/api/sso"), get("/api/group-mappings"), get("/api/teams")]);
  fill(el, h("h1", {}, "Settings"), ssoSection(el, sso), mappingsSection(el, mappings, teams.teams));
}

function ssoSection(el, sso) {
  const facts = [
    ["Configured", sso.configured ? "yes" : "no"],
    ["Set by", { flags: "the --oidc-* flags (change them on the gateway)", api: "this page (the admin API)", none: "nothing yet" }[sso.source] || sso.source],
    ["Redirect URI (register it at the identity provider)", sso.redirect_uri ? h("code", {}, sso.redirect_uri) : "–"],
  ];
  if (sso.source === "flags") {
    facts.push(
      ["Issuer", sso.issuer || "–"],
      ["Client id", sso.client_id || "–"],
      ["Client secret", sso.client_secret || "none"],
      ["Scopes", sso.scopes.join(" ")],
      ["Groups claim", sso.groups_claim],
      ["User name claim", sso.user_name_claim],
      ["Session hours", String(sso.session_hours)],
    );
  }
  const summary = h("dl", { class: "detail" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  if (sso.source === "flags") {
    return h("section", { "aria-label": "Single sign-on" }, h("h2", {}, "Single sign-on"), summary);
  }
  const secretNow = sso.client_secret;
  const secret = h("input", {
    name: "client_secret",
    type: "password",
    autocomplete: "new-password",
    "data-path": "client_secret",
    // An env.NAME reference is not a secret: it is shown to edit; a stored secret never is.
    value: secretNow && secretNow !== REDACTED ? secretNow : "",
    placeholder: secretNow === REDACTED ? "stored: leave empty to keep" : "a secret or env.NAME",
  });
  const removeSecret = secretNow ? checkbox("No client secret (a public client, PKCE only)", { name: "no_secret" }) : null;
  const form = h(
    "form",
    {
      "aria-label": "Single sign-on settings",
      onsubmit: async (e) => {
        e.preventDefault();
        const data = new FormData(e.target);
        const text = (k) => String(data.get(k) || "").trim();
        const body = {
          issuer: text("issuer"),
          client_id: text("client_id"),
          scopes: words(text("scopes")),
          groups_claim: text("groups_claim") || undefined,
          user_name_claim: text("user_name_claim") || undefined,
          public_url: text("public_url") || undefined,
          session_hours: text("session_hours") ? Number(text("session_hours")) : undefined,
        };
        const typed = secret.value.trim();
        if (data.get("no_secret")) body.client_secret = undefined;
        else if (typed) body.client_secret = typed;
        else if (secretNow === REDACTED) body.client_secret = REDACTED;
        try {
          await api("PUT", "/api/sso", body);
          toast("Single sign-on saved");
          await settings(el);
        } catch (err) {
          formError(form, err);
        }
      },
    },
    errorSlot(),
    h(
      "div",
      { class: "row" },
      field("Issuer URL", { name: "issuer", required: true, size: "40", value: sso.issuer || "", "data-path": "issuer" }),
      field("Client id", { name: "client_id", required: true, value: sso.client_id || "", "data-path": "client_id" }),
      h("label", {}, `Client secret (now: ${secretNow || "none"})`, secret),
      removeSecret,
    ),
    h(
      "div",
      { class: "row" },
      field("Scopes (space-separated)", { name: "scopes", size: "30", value: sso.scopes.join(" "), "data-path": "scopes" }),
      field("Groups claim", { name: "groups_claim", value: sso.groups_claim, "data-path": "groups_claim" }),
      field("User name claim", { name: "user_name_claim", value: sso.user_name_claim, "data-path": "user_name_claim" }),
    ),
    h(
      "div",
      { class: "row" },
      field("Public URL of the gateway", { name: "public_url", size: "40", value: sso.public_url || "", "data-path": "public_url" }),
      field("Session hours", { name: "session_hours", type: "number", min: "1", step: "1", value: String(sso.session_hours), "data-path": "session_hours" }),
    ),
    h(
      "div",
      { class: "row" },
      h("button", { type: "submit", class: "primary" }, "Save single sign-on"),
      sso.source === "api"
        ? h(
            "button",
            {
              type: "button",
              class: "danger",
              onclick: async () => {
                if (!confirm("Remove the single sign-on configuration? Nobody can sign in with it afterwards (sessions last until they expire).")) return;
                try {
                  await api("DELETE", "/api/sso");
                  toast("Single sign-on removed");
                  await settings(el);
                } catch (err) {
                  formError(form, err);
                }
              },
            },
            "Remove single sign-on",
          )
        : null,
    ),
  );
  return h("section", { "aria-label": "Single sign-on" }, h("h2", {}, "Single sign-on"), summary, form);
}

function mappingsSection(el, mappings, teams) {
  const teamRows = h("tbody");
  const roleRows = h("tbody");
  const removeButton = (tr, what) => h("button", { type: "button", class: "danger", onclick: () => tr.remove() }, `Remove this ${what} rule`);
  const addTeamRow = (m) => {
    const tr = h("tr");
    fill(
      tr,
      h("td", {}, h("input", { "aria-label": "Group (team rule)", required: true, value: m ? m.group : "" })),
      h("td", {}, h("select", { "aria-label": "Team" }, teams.map((t) => h("option", { value: t.id, selected: m && t.id === m.team_id }, t.name)))),
      h("td", {}, removeButton(tr, "team")),
    );
    teamRows.append(tr);
    return tr;
  };
  const addRoleRow = (m) => {
    const tr = h("tr");
    fill(
      tr,
      h("td", {}, h("input", { "aria-label": "Group (role rule)", required: true, value: m ? m.group : "" })),
      h("td", {}, h("select", { "aria-label": "Role" }, ROLES.map((r) => h("option", { value: r, selected: m && r === m.role }, r)))),
      h("td", {}, removeButton(tr, "role")),
    );
    roleRows.append(tr);
    return tr;
  };
  mappings.teams.forEach(addTeamRow);
  mappings.roles.forEach(addRoleRow);
  const head = (...cols) => h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c))));

  const form = h(
    "form",
    {
      "aria-label": "Group mappings",
      onsubmit: async (e) => {
        e.preventDefault();
        const data = new FormData(e.target);
        const rows = (body) =>
          [...body.querySelectorAll("tr")].map((tr, i) => {
            const [group, pick] = tr.querySelectorAll("input, select");
            return { tr, i, group, pick };
          });
        const teamRules = rows(teamRows);
        const roleRules = rows(roleRows);
        for (const { i, group, pick } of teamRules) {
          group.dataset.path = `teams[${i}].group`;
          pick.dataset.path = `teams[${i}].team_id`;
        }
        for (const { i, group, pick } of roleRules) {
          group.dataset.path = `roles[${i}].group`;
          pick.dataset.path = `roles[${i}].role`;
        }
        const body = {
          teams: teamRules.map(({ group, pick }) => ({ group: group.value.trim(), team_id: pick.value })),
          roles: roleRules.map(({ group, pick }) => ({ group: group.value.trim(), role: pick.value })),
          default_role: String(data.get("default_role")),
          allowed_groups: commas(String(data.get("allowed_groups") || "")),
        };
        try {
          await api("PUT", "/api/group-mappings", body);
          toast("Group mappings saved");
          await settings(el);
        } catch (err) {
          formError(form, err);
        }
      },
    },
    errorSlot(),
    h("h3", {}, "Group → team (the first rule the user matches)"),
    h("table", {}, h("caption", { class: "sr-only" }, "Team rules"), head("Group", "Team", "Actions"), teamRows),
    h("button", { type: "button", disabled: !teams.length, onclick: () => addTeamRow(null).querySelector("input").focus() }, "Add a team rule"),
    h("h3", {}, "Group → role (the highest role the user's groups give)"),
    h("table", {}, h("caption", { class: "sr-only" }, "Role rules"), head("Group", "Role", "Actions"), roleRows),
    h("button", { type: "button", onclick: () => addRoleRow(null).querySelector("input").focus() }, "Add a role rule"),
    h(
      "div",
      { class: "row" },
      h("label", {}, "Role of users no rule matches", h("select", { name: "default_role", "data-path": "default_role" }, ROLES.map((r) => h("option", { value: r, selected: r === mappings.default_role }, r)))),
      field("Only these groups may sign in (comma-separated; empty: anyone)", { name: "allowed_groups", size: "40", value: (mappings.allowed_groups || []).join(", "), "data-path": "allowed_groups" }),
    ),
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Save group mappings")),
  );
  return h(
    "section",
    { "aria-label": "Group mappings" },
    h("h2", {}, "Group mappings"),
    h("p", { class: "hint" }, "They apply at each user's next sign-in, and to SCIM group changes."),
    form,
  );
}
