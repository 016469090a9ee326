// The signed-in user's own key: its prefix, a rotation that shows the new value once, the
// Claude Code settings, and personal API tokens.

import { api, get, session } from "../api.js";
import { h, fill, table, toast, when } from "../dom.js";

export async function me(el) {
  const m = session.me;
  if (!m.user) {
    fill(
      el,
      h("h1", {}, "My key"),
      h("p", {}, `You are using the ${m.credential === "loopback" ? "local (loopback) admin access" : "admin token"}: it has no personal key. People who sign in with single sign-on get one.`),
    );
    return;
  }
  const [key, tokens] = await Promise.all([get("/api/me/key"), get("/api/me/tokens")]);
  const shown = h("div", { "aria-live": "polite" });
  const rotate = async () => {
    if (!confirm("Rotate your key? The current value stops working at once.")) return;
    try {
      const k = await api("POST", "/api/me/key/rotate");
      fill(shown, h("div", { class: "secret", role: "alert" }, h("p", {}, "Your new key (shown once):"), h("code", {}, k.value)));
    } catch (err) {
      toast(err.message, true);
    }
  };
  fill(
    el,
    h("h1", {}, "My key"),
    h(
      "dl",
      { class: "detail" },
      h("dt", {}, "User"),
      h("dd", {}, m.user.user_name),
      h("dt", {}, "Role"),
      h("dd", {}, m.role),
      h("dt", {}, "Key"),
      h("dd", {}, h("code", {}, key.value_prefix || "–")),
    ),
    h("p", {}, "Claude Code can fetch it itself: set ", h("code", {}, '"apiKeyHelper": "tollgate login --print-key"'), " in its settings. The sign-in page ", h("a", { href: "/auth/me" }, "/auth/me"), " shows the full settings."),
    h("button", { type: "button", onclick: rotate }, "Rotate my key"),
    shown,
    h("h2", {}, "API tokens"),
    table(
      [
        { label: "Name", value: (t) => t.name },
        { label: "Expires", value: (t) => when(t.expires_at) },
        { label: "Last used", value: (t) => when(t.last_used_at) },
      ],
      tokens.tokens || [],
      { empty: "No API token.", caption: "API tokens" },
    ),
  );
}
