// The data-plane fleet: each data plane's applied config version against the published one.

import { get } from "../api.js";
import { h, fill, table, when } from "../dom.js";

export async function fleet(el) {
  const f = await get("/api/data-planes");
  fill(
    el,
    h("h1", {}, "Fleet"),
    h("p", { class: "hint" }, `Published config version: ${f.published_version}. `, f.count ? `${f.count} data plane${f.count === 1 ? "" : "s"}.` : "No separate data plane is connected (the all-in-one serves inference itself)."),
    table(
      [
        { label: "Node", value: (d) => d.node_id },
        { label: "Address", value: (d) => d.address || "–" },
        { label: "Connected", value: (d) => (d.connected ? h("span", { class: "badge ok" }, "yes") : h("span", { class: "badge err" }, "no")) },
        { label: "Applied version", num: true, value: (d) => String(d.applied_version ?? "–") },
        { label: "Behind", num: true, value: (d) => (d.applied_version === null || d.applied_version === undefined ? "–" : String(Math.max(0, f.published_version - d.applied_version))) },
        { label: "Lagging", value: (d) => (d.lagging ? h("span", { class: "badge warn" }, "yes") : "no") },
        { label: "Last seen", value: (d) => when(d.last_seen) },
        { label: "Build", value: (d) => d.build_version || "–" },
        { label: "Last error", value: (d) => d.last_error || "–" },
        { label: "Ejected keys", num: true, value: (d) => String((d.ejected_keys || []).length) },
      ],
      f.data_planes,
      { empty: "No data plane has connected.", caption: "Data planes" },
    ),
  );
}
