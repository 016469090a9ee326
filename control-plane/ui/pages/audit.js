// The audit log: who changed what, from where, before and after (secrets redacted by the API);
// the filtered log exported as a job (POST /api/jobs/export, followed and downloaded here).

import { get, withQuery } from "../api.js";
import { h, fill, table, field, select, when, errorBox } from "../dom.js";
import { startExport } from "./jobs.js";

export async function audit(el) {
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filters" },
    field("Actor", { name: "actor", placeholder: "user:alice*" }),
    field("Action", { name: "action", placeholder: "virtual_key.*" }),
    field("Target", { name: "target" }),
    h("label", {}, "Result", h("select", { name: "result" }, ["", "success", "failure"].map((v) => h("option", { value: v }, v || "any")))),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    select("Export as", "export_format", [["csv", "CSV"], ["jsonl", "JSON Lines"]], "csv"),
    h("button", { type: "button", onclick: () => exportJob() }, "Export"),
  );
  const exportStatus = h("p", { "aria-live": "polite" });
  // The filters of the form, as the API takes them.
  const filters = () => {
    const q = {};
    for (const [k, v] of new FormData(form)) if (k !== "export_format" && String(v).trim()) q[k] = String(v).trim();
    return q;
  };
  function exportJob() {
    const format = new FormData(form).get("export_format");
    startExport({ kind: "audit", format, query: filters() }, exportStatus).catch((e) => fill(exportStatus, errorBox(e)));
  }
  const out = h("div", { "aria-live": "polite" });
  const detail = h("div");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  let rows = [];
  let cursor = null;
  const load = async (append) => {
    const q = { limit: 100, ...filters() };
    if (append && cursor) q.cursor = cursor;
    const page = await get(withQuery("/api/audit-logs", q));
    rows = append ? rows.concat(page.audit_logs) : page.audit_logs;
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
    fill(
      out,
      table(
        [
          { label: "When", value: (r) => when(r.at) },
          { label: "Actor", value: (r) => r.actor },
          { label: "Action", value: (r) => r.action },
          { label: "Target", value: (r) => r.target },
          { label: "Result", value: (r) => (r.details && r.details.result) || "–" },
        ],
        rows,
        {
          empty: "No audit row matches.",
          caption: "Audit log",
          onRow: (r) => fill(detail, h("div", { class: "panel" }, h("h2", {}, `${r.action} · ${r.target}`), h("pre", { class: "body" }, JSON.stringify(r.details, null, 2)))),
        },
      ),
    );
  };
  const fail = (e) => fill(out, errorBox(e));
  form.addEventListener("submit", (e) => { e.preventDefault(); load(false).catch(fail); });
  more.addEventListener("click", () => load(true).catch(fail));
  fill(el, h("h1", {}, "Audit log"), h("p", { class: "hint" }, "Newest first. Export: the filtered log as a job, downloadable for 7 days (or GET /api/audit-logs/export); verification: tollgate audit verify."), form, exportStatus, out, more, detail);
  await load(false).catch(fail);
}
