// DOM helpers. Text from the API is only ever set as text (never parsed as HTML).

/** `h("a", {href: "#/logs"}, "Logs")`: an element with attributes, listeners (`onclick`) and
 *  children (strings become text nodes; null and false are skipped). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the content of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: `columns` are `{label, value: row => node|text, num}`; `onRow` makes rows
 *  clickable (and reachable by keyboard). */
export function table(columns, rows, { onRow, empty = "Nothing here yet.", caption } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    caption ? h("caption", { class: "sr-only" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((r) => {
        const tr = h(
          "tr",
          onRow ? { class: "clickable", tabindex: "0", onclick: () => onRow(r), onkeydown: (e) => { if (e.key === "Enter") onRow(r); } } : {},
          columns.map((c) => h("td", { class: c.num ? "num" : null }, c.value(r))),
        );
        return tr;
      }),
    ),
  );
}

/** A labelled input. */
export function field(label, attrs) {
  return h("label", {}, label, h("input", attrs));
}

/** A labelled select of `[value, text]` options. */
export function select(label, name, options, value) {
  return h(
    "label",
    {},
    label,
    h("select", { name }, options.map(([v, t]) => h("option", { value: v, selected: v === value }, t))),
  );
}

/** An API error as a person reads it: the field it names first. */
export const errorText = (e) => (e.field ? `${e.field}: ${e.message}` : e.message);

/** An error shown in place of a page's content. */
export const errorBox = (e) => h("p", { class: "error", role: "alert" }, errorText(e));

export function toast(message, isError = false) {
  const box = document.getElementById("toast");
  const item = h("div", { class: isError ? "error" : null }, message);
  box.append(item);
  setTimeout(() => item.remove(), isError ? 8000 : 4000);
}

const usdFormat = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 4 });
const intFormat = new Intl.NumberFormat("en-US");

export const usd = (v) => (v === null || v === undefined ? "unpriced" : usdFormat.format(v));
export const int = (v) => (v === null || v === undefined ? "–" : intFormat.format(v));
export const ms = (v) => (v === null || v === undefined ? "–" : `${intFormat.format(v)} ms`);

/** An RFC 3339 instant in the browser's time zone. */
export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function statusBadge(status) {
  const cls = status < 400 ? "ok" : status === 429 ? "warn" : "err";
  return h("span", { class: `badge ${cls}` }, String(status));
}

/** A usage bar: `used` of `max` (over 100 % shown in the danger colour), with its text. */
export function bar(used, max, text) {
  const pct = max > 0 ? Math.min(100, (used / max) * 100) : 0;
  return h(
    "div",
    { class: "row" },
    h(
      "div",
      { class: used >= max && max > 0 ? "bar over" : "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": String(max), "aria-valuenow": String(used), "aria-label": text },
      fillTo(pct),
    ),
    h("span", {}, text),
  );
}

function fillTo(pct) {
  const span = document.createElement("span");
  // Through the CSSOM: the console's Content-Security-Policy allows no inline style attributes.
  span.style.width = `${pct.toFixed(1)}%`;
  return span;
}

/** A labelled checkbox (the label holds it: `.querySelector("input")` reads it). */
export function checkbox(label, attrs) {
  return h("label", { class: "check" }, h("input", { type: "checkbox", ...attrs }), label);
}

/** What the admin API returns for a stored secret (sent back, it keeps the secret). */
export const REDACTED = "<redacted>";

/** The entries of a list typed one per line (patterns may hold commas), blanks dropped. */
export const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);

/** The entries of a comma-separated list, blanks dropped. */
export const commas = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

/** Moves focus back to the button that opened an editor (marked `data-opener="<id>"`), found
 *  anew: the list it sits in may have been drawn again since. */
export function focusOpener(id) {
  const el = document.querySelector(`[data-opener="${CSS.escape(id)}"]`);
  if (el) el.focus();
}

/** Where a form shows the API's error (see `formError`). */
export const errorSlot = () => h("div", { class: "form-errors" });

/** Removes what `formError` showed. */
export function clearFormError(form) {
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) {
    el.removeAttribute("aria-invalid");
    el.removeAttribute("aria-describedby");
  }
  for (const el of form.querySelectorAll(".form-errors")) el.replaceChildren();
}

let errorIds = 0;

/** Shows an API error at `form`: in its error slot (as errorBox does), and next to the control
 *  whose `data-path` is the JSON path the API names (or the nearest enclosing path: `budgets[1]`
 *  for `budgets[1].id`), which is marked invalid and described by the message. Errors without a
 *  field, or for a path the form has no control for, show in the slot only. */
export function formError(form, e) {
  clearFormError(form);
  let slot = form.querySelector(".form-errors");
  if (!slot) {
    slot = errorSlot();
    form.prepend(slot);
  }
  slot.append(errorBox(e));
  const control = e.field ? controlFor(form, e.field) : null;
  if (control) {
    const id = `field-error-${++errorIds}`;
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", id);
    const note = h("span", { class: "field-error error", id, "data-field": e.field }, e.message);
    (control.closest("label") || control).after(note);
    // A control in a closed part of the form (a provider config's limits) is shown first.
    for (let d = control.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
    control.focus();
  }
}

function controlFor(form, path) {
  const all = [...form.querySelectorAll("[data-path]")];
  for (let p = path; p; ) {
    const hit = all.find((el) => el.dataset.path === p);
    if (hit) return hit;
    const shorter = p.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
    if (shorter === p) return null;
    p = shorter;
  }
  return null;
}
