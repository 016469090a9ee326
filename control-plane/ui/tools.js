// The MCP tool allowlist (`mcp_tools`) of a virtual key or team, one form part for both
// editors: off (null: no restriction of its own) or patterns over the served tool names
// `<server>__<tool>`, one a line (none at all: no tool).

import { h, checkbox, lines } from "./dom.js";

/**
 * The field, filled with `list` (the API's `mcp_tools`); `read()` gives the value to send.
 */
export function toolsField(list, { owner }) {
  const restricted = Array.isArray(list);
  const box = checkbox(`Restrict the MCP tools ${owner} may call`, { checked: restricted, "data-path": "mcp_tools" });
  const input = box.querySelector("input");
  const patterns = h(
    "textarea",
    { rows: "3", cols: "50", spellcheck: "false", "data-path": "mcp_tools", disabled: !restricted },
    (list || []).join("\n"),
  );
  input.addEventListener("change", () => {
    patterns.disabled = !input.checked;
  });
  const el = h(
    "fieldset",
    {},
    h("legend", {}, "MCP tools"),
    box,
    h("label", {}, "Allowed tools (one pattern a line: github__search_*, regex:docs__.*; none: no tool)", patterns),
  );
  return { el, read: () => (input.checked ? lines(patterns.value) : null) };
}
