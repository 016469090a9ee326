// The console's only way to the gateway: the admin API, with the caller's own credentials (the
// SSO session cookie and its CSRF token, an admin token kept for this tab only, or nothing on
// loopback). The API enforces the roles; the console only hides what a role cannot use.

const TOKEN_KEY = "tollgate.admin-token";

export const session = {
  /** `/api/me`: credential, role, user, personal_key_id, csrf_token. */
  me: null,
  token: sessionStorage.getItem(TOKEN_KEY),
};

export function useToken(token) {
  session.token = token || null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error of the admin API: its status and `{type, message, field}`. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.type = e.type || "error";
    this.field = e.field || null;
  }
}

function headers(method, json) {
  const h = { Accept: "application/json" };
  if (json) h["Content-Type"] = "application/json";
  if (session.token) h.Authorization = `Bearer ${session.token}`;
  if (method !== "GET" && session.me && session.me.csrf_token) {
    h["X-CSRF-Token"] = session.me.csrf_token;
  }
  return h;
}

/** `method path` with an optional JSON body; the parsed answer, or throws ApiError. */
export async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: headers(method, body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: { message: text.slice(0, 300) } }; }
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const get = (path) => api("GET", path);

/** `GET path` as a Blob (exports), or throws ApiError. */
export async function download(path) {
  const resp = await fetch(path, { headers: headers("GET", false), credentials: "same-origin" });
  if (!resp.ok) {
    let data = null;
    try { data = await resp.json(); } catch { /* not JSON */ }
    throw new ApiError(resp.status, data);
  }
  return resp.blob();
}

/** `path` with the non-empty entries of `params` as its query string. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** The caller's role: `admin`, `viewer`, `team-admin`, `member` (null before sign-in). */
export function role() {
  return session.me ? session.me.role : null;
}

/** Admins and viewers read everything; team admins their team; members their own key. */
export const readsAll = () => role() === "admin" || role() === "viewer";
/** Who may change keys (a team admin, their team's). */
export const managesKeys = () => role() === "admin" || role() === "team-admin";
export const isAdmin = () => role() === "admin";
/** Providers, pricing, the fleet and jobs: everyone but members (the API's ReadConfig). */
export const readsConfig = () => role() !== null && role() !== "member";
