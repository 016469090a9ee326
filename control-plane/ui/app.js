// The Tollgate console: a single page over the admin API, served by the control plane (and the
// all-in-one) at `/`. No build step and no network beyond this gateway: every file is under
// /ui/, uPlot (vendored, MIT) draws the charts.

import { session, get, useToken, ApiError, readsAll, readsConfig, isAdmin } from "./api.js";
import { h, fill, toast } from "./dom.js";
import { overview } from "./pages/overview.js";
import { logs, logDetail } from "./pages/logs.js";
import { keys } from "./pages/keys.js";
import { spend } from "./pages/spend.js";
import { teams } from "./pages/teams.js";
import { providers } from "./pages/providers.js";
import { mcp } from "./pages/mcp.js";
import { fleet } from "./pages/fleet.js";
import { pricing } from "./pages/pricing.js";
import { jobs } from "./pages/jobs.js";
import { audit } from "./pages/audit.js";
import { me } from "./pages/me.js";
import { settings } from "./pages/settings.js";

/** Sections: hash route, label, page, who sees it in the navigation. */
const SECTIONS = [
  ["", "Overview", overview, () => true],
  ["logs", "Logs", logs, () => true],
  ["spend", "Spend", spend, () => true],
  ["keys", "Virtual keys", keys, () => true],
  ["teams", "Teams", teams, readsConfig],
  ["providers", "Providers", providers, readsConfig],
  ["mcp", "MCP", mcp, () => true],
  ["fleet", "Fleet", fleet, readsConfig],
  ["pricing", "Pricing", pricing, readsConfig],
  ["jobs", "Jobs", jobs, () => true],
  ["audit", "Audit log", audit, readsAll],
  ["settings", "Settings", settings, isAdmin],
  ["me", "My key", me, () => true],
];

const main = () => document.getElementById("main");

function route() {
  const [hash] = location.hash.replace(/^#\/?/, "").split("?");
  const [section, ...rest] = hash.split("/");
  return { section, rest: rest.map(decodeURIComponent) };
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  fill(
    nav,
    SECTIONS.filter(([, , , visible]) => visible()).map(([path, label]) =>
      h("a", { href: `#/${path}`, "aria-current": path === current ? "page" : null }, label),
    ),
  );
}

function renderWho() {
  const who = document.getElementById("who");
  const m = session.me;
  if (!m) return fill(who);
  const name = m.user ? m.user.user_name : m.credential === "loopback" ? "local admin" : "admin token";
  const out = [h("span", {}, `${name} · ${m.role}`)];
  if (m.credential === "session") {
    out.push(
      h(
        "form",
        { method: "post", action: "/auth/logout" },
        h("input", { type: "hidden", name: "csrf_token", value: m.csrf_token }),
        h("button", { type: "submit" }, "Sign out"),
      ),
    );
  } else if (session.token) {
    out.push(h("button", { type: "button", onclick: () => { useToken(null); start(); } }, "Forget token"));
  }
  fill(who, out);
}

/** The sign-in screen: SSO, or an admin token for this tab. */
function signIn(reason) {
  fill(document.getElementById("nav"));
  fill(document.getElementById("who"));
  const tokenInput = h("input", { type: "password", name: "token", autocomplete: "off", required: true });
  fill(
    main(),
    h("h1", {}, "Sign in"),
    reason ? h("p", { class: "error", role: "alert" }, reason) : null,
    h("p", {}, h("a", { href: `/auth/login?return_to=${encodeURIComponent("/")}` }, "Sign in with single sign-on")),
    h(
      "form",
      {
        class: "inline",
        onsubmit: (e) => {
          e.preventDefault();
          useToken(tokenInput.value.trim());
          start();
        },
      },
      h("label", {}, "Admin token (kept in this tab only)", tokenInput),
      h("button", { type: "submit", class: "primary" }, "Use token"),
    ),
  );
}

async function render() {
  const { section, rest } = route();
  const entry = SECTIONS.find(([path]) => path === section) || SECTIONS[0];
  renderNav(entry[0]);
  const el = main();
  fill(el, h("p", { class: "loading" }, "Loading…"));
  try {
    if (entry[0] === "logs" && rest[0]) await logDetail(el, rest[0]);
    else await entry[2](el, rest);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signIn("Your sign-in has ended. Sign in again.");
    fill(el, h("h1", {}, entry[1]), h("p", { class: "error", role: "alert" }, e.message));
  }
  el.focus({ preventScroll: true });
}

async function start() {
  try {
    session.me = await get("/api/me");
  } catch (e) {
    session.me = null;
    if (e instanceof ApiError && e.status === 401) {
      return signIn(session.token ? "That token was refused." : null);
    }
    fill(main(), h("p", { class: "error", role: "alert" }, `The gateway did not answer: ${e.message}`));
    return;
  }
  renderWho();
  await render();
}

// Only `#/...` hashes are sections (`#main` is the skip link's target).
window.addEventListener("hashchange", () => { if (session.me && location.hash.startsWith("#/")) render(); });
window.addEventListener("unhandledrejection", (e) => toast(String(e.reason && e.reason.message || e.reason), true));
start();
