// Jobs: long operations running in the background (GET /api/jobs: each role sees the jobs it
// may read), with their progress, refreshed every two seconds while one is queued or running;
// admins cancel them. Every signed-in role sees the page and exports what it may read; the page
// calls no admin-only route for the others (cancelling is offered to admins only). Exports
// (POST /api/jobs/export) are started here, on the Spend and Audit pages (startExport), and
// downloaded with the caller's credentials (fetch and a Blob: a plain link carries neither the
// admin token nor the CSRF header).

import { api, get, download, isAdmin, readsAll, session } from "../api.js";
import { h, fill, table, toast, when, bar, int, select, errorBox } from "../dom.js";

const REFRESH_MS = 2000;

const EXPORT_NAMES = { spend: "Spend", logs: "Request logs", audit: "Audit log" };

/** Whether the caller may download export `j` (its creator and admins; the API decides). */
function mayDownload(j) {
  const user = session.me && session.me.user;
  return j.kind === "export" && (isAdmin() || Boolean(user && j.params && user.id === j.params.user_id));
}

/** The file name of export `j`: the server's (`Content-Disposition` of its download,
 *  `ExportParams::filename`): `<kind>-<job id without dashes>.<csv|jsonl>`. */
export function exportFileName(j) {
  const ext = j.params && j.params.format === "jsonl" ? "jsonl" : "csv";
  return `${j.params.export}-${j.id.replaceAll("-", "")}.${ext}`;
}

/** Saves the output of the finished export `j` as a file. */
export async function saveExport(j) {
  const blob = await download(`/api/jobs/${j.id}/download`);
  const href = URL.createObjectURL(blob);
  const a = h("a", { href, download: exportFileName(j) });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 0);
}

const downloadButton = (j) =>
  h("button", { type: "button", onclick: () => saveExport(j).catch((e) => toast(e.message, true)) }, "Download");

/** Starts an export (`body` as POST /api/jobs/export takes it) and follows it in `status` (an
 *  aria-live element) until it ends; then offers its download. Stops once `status` leaves the
 *  page. */
export async function startExport(body, status) {
  const follow = (j) => {
    if (!status.isConnected) return;
    if (j.state === "queued" || j.state === "running") {
      fill(status, `Export ${j.state}: ${j.message || "waiting for a replica"}`);
      setTimeout(() => get(`/api/jobs/${j.id}`).then(follow).catch((e) => fill(status, errorBox(e))), REFRESH_MS);
    } else if (j.state === "succeeded") {
      fill(status, `Export ready: ${int(j.done)} rows. `, downloadButton(j));
    } else {
      fill(status, errorBox({ message: `Export ${j.state}: ${j.message || ""}` }));
    }
  };
  // Empty filters are left out, as withQuery leaves them out of a GET.
  const query = Object.fromEntries(Object.entries(body.query || {}).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  follow(await api("POST", "/api/jobs/export", { ...body, query }));
}

function jobName(j) {
  if (j.kind === "recompute_costs") return "Recompute costs";
  if (j.kind === "export" && j.params) return `Export: ${EXPORT_NAMES[j.params.export] || j.params.export} (${j.params.format})`;
  return j.kind;
}

function range(j) {
  const p = j.params && j.kind === "export" ? j.params.query || {} : j.params || {};
  return p.since ? `${when(p.since)} – ${when(p.until)}` : "–";
}

function progress(j) {
  if (j.total !== null && j.total !== undefined) {
    return bar(j.done, Math.max(j.total, 1), `${int(j.done)} of ${int(j.total)} (${j.percent}%)`);
  }
  if (j.kind === "export" && j.state === "running") return `${int(j.done)} rows so far`;
  return "waiting";
}

export async function jobs(el) {
  const list = h("div", { "aria-live": "polite" });
  const status = h("p", { "aria-live": "polite" });
  let timer = null;

  async function cancel(j) {
    try {
      await api("POST", `/api/jobs/${j.id}/cancel`);
      toast("Cancel requested");
      await render();
    } catch (e) {
      toast(e.message, true);
    }
  }

  function actions(j) {
    if (isAdmin() && (j.state === "queued" || j.state === "running") && !j.cancel_requested) {
      return h("button", { type: "button", class: "danger", onclick: () => cancel(j) }, "Cancel");
    }
    if (j.state === "succeeded" && mayDownload(j)) return downloadButton(j);
    return "";
  }

  async function render() {
    clearTimeout(timer);
    if (!list.isConnected) return;
    const r = await get("/api/jobs");
    fill(
      list,
      table(
        [
          { label: "Job", value: jobName },
          { label: "Range", value: range },
          { label: "State", value: (j) => h("span", { class: `badge ${j.state === "succeeded" ? "ok" : j.state === "failed" ? "err" : j.state === "running" ? "warn" : ""}` }, j.state) },
          { label: "Progress", value: progress },
          { label: "Message", value: (j) => j.message || "–" },
          { label: "Asked by", value: (j) => j.created_by },
          { label: "Created", value: (j) => when(j.created_at) },
          { label: "Finished", value: (j) => when(j.finished_at) },
          { label: "Actions", value: actions },
        ],
        r.jobs,
        {
          empty: isAdmin()
            ? "No job yet. Recompute costs from the Pricing page after changing a price, or start an export above."
            : "No job yet. Start an export above.",
          caption: "Jobs",
        },
      ),
    );
    if (r.jobs.some((j) => j.state === "queued" || j.state === "running")) {
      timer = setTimeout(() => render().catch((e) => toast(e.message, true)), REFRESH_MS);
    }
  }

  // Exports of the defaults: spend of the last 30 days per day and team, the request logs of
  // the last 24 hours, the whole audit log. The Spend and Audit pages export their filters.
  const kinds = [["spend", "Spend, last 30 days, per day and team"], ["logs", "Request logs, last 24 hours"]];
  if (readsAll()) kinds.push(["audit", "Audit log, everything"]);
  const queries = { spend: { interval: "day", group_by: "team" }, logs: {}, audit: {} };
  const form = h(
    "form",
    { class: "filters", "aria-label": "New export" },
    select("Export", "kind", kinds, "spend"),
    select("Format", "format", [["csv", "CSV"], ["jsonl", "JSON Lines"]], "csv"),
    h("button", { type: "submit", class: "primary" }, "Start export"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const d = new FormData(form);
    const kind = d.get("kind");
    startExport({ kind, format: d.get("format"), query: queries[kind] }, status)
      .then(() => render())
      .catch((err) => fill(status, errorBox(err)));
  });

  fill(
    el,
    h("h1", {}, "Jobs"),
    h("p", { class: "hint" }, "Long operations run in the background by the control plane; their progress is kept, so a job resumes where it stopped if its replica restarts. Exports can be downloaded for 7 days by whoever started them and by admins."),
    form,
    status,
    list,
  );
  await render();
}
