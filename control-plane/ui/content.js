// Content logging's setting (`{enabled, max_body_bytes}`) as one form part for virtual keys and
// teams. A key may also follow its team (`null`); a team is off (`null`) or records bodies. Only
// admins change it (the API refuses others), so the part is offered to admins only.

import { h } from "./dom.js";

const DEFAULT_BYTES = 65536;

/**
 * `current`: the stored setting or null. `forKey`: a key (which may follow its team) rather
 * than a team. Returns `{el, read}`: `read()` gives the `content_logging` value for the request.
 */
export function contentFields(current, { forKey }) {
  const choices = forKey
    ? [["team", "Follow the team"], ["on", "Record bodies"], ["off", "Do not record"]]
    : [["team", "Off"], ["on", "Record bodies"]];
  const now = current ? (current.enabled ? "on" : forKey ? "off" : "team") : "team";
  const mode = h("select", { "data-path": "content_logging" }, choices.map(([v, t]) => h("option", { value: v, selected: v === now }, t)));
  const bytes = h("input", {
    type: "number",
    min: "1",
    max: "1048576",
    step: "1",
    value: String(current && current.max_body_bytes ? current.max_body_bytes : DEFAULT_BYTES),
    "data-path": "content_logging.max_body_bytes",
  });
  const sync = () => { bytes.disabled = mode.value !== "on"; };
  mode.addEventListener("change", sync);
  sync();
  const el = h(
    "fieldset",
    {},
    h("legend", {}, "Content logging"),
    h("p", { class: "hint" }, "Records request and response bodies (credentials masked) for this " + (forKey ? "key" : "team's keys") + ". Reading them is audited."),
    h("div", { class: "row" }, h("label", {}, "Request and response bodies", mode), h("label", {}, "Largest body kept (bytes)", bytes)),
  );
  return {
    el,
    read() {
      if (mode.value === "on") return { enabled: true, max_body_bytes: Number(bytes.value) };
      if (mode.value === "off") return { enabled: false, max_body_bytes: Number(bytes.value) || DEFAULT_BYTES };
      return null;
    },
  };
}
