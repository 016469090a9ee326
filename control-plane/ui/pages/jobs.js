// Jobs: long operations running in the background (GET /api/jobs), with their progress,
// refreshed every two seconds while one is queued or running; admins cancel them.

import { api, get, isAdmin } from "../api.js";
import { h, fill, table, toast, when, bar, int } from "../dom.js";

const REFRESH_MS = 2000;

export async function jobs(el) {
  const list = h("div", { "aria-live": "polite" });
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

  async function render() {
    clearTimeout(timer);
    if (!list.isConnected) return;
    const r = await get("/api/jobs");
    fill(
      list,
      table(
        [
          { label: "Job", value: (j) => (j.kind === "recompute_costs" ? "Recompute costs" : j.kind) },
          { label: "Range", value: (j) => (j.params && j.params.since ? `${when(j.params.since)} – ${when(j.params.until)}` : "–") },
          { label: "State", value: (j) => h("span", { class: `badge ${j.state === "succeeded" ? "ok" : j.state === "failed" ? "err" : j.state === "running" ? "warn" : ""}` }, j.state) },
          {
            label: "Progress",
            value: (j) =>
              j.total === null || j.total === undefined
                ? "waiting"
                : bar(j.done, Math.max(j.total, 1), `${int(j.done)} of ${int(j.total)} (${j.percent}%)`),
          },
          { label: "Message", value: (j) => j.message || "–" },
          { label: "Asked by", value: (j) => j.created_by },
          { label: "Created", value: (j) => when(j.created_at) },
          { label: "Finished", value: (j) => when(j.finished_at) },
          {
            label: "Actions",
            value: (j) =>
              isAdmin() && (j.state === "queued" || j.state === "running") && !j.cancel_requested
                ? h("button", { type: "button", class: "danger", onclick: () => cancel(j) }, "Cancel")
                : "",
          },
        ],
        r.jobs,
        { empty: "No job yet. Recompute costs from the Pricing page after changing a price.", caption: "Jobs" },
      ),
    );
    if (r.jobs.some((j) => j.state === "queued" || j.state === "running")) {
      timer = setTimeout(() => render().catch((e) => toast(e.message, true)), REFRESH_MS);
    }
  }

  fill(el, h("h1", {}, "Jobs"), h("p", { class: "hint" }, "Long operations run in the background by the control plane; their progress is kept, so a job resumes where it stopped if its replica restarts."), list);
  await render();
}
