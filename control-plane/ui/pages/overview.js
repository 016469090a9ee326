// Overview: the gateway's state at a glance and, once usage arrives, spend over time.

import { get, readsConfig } from "../api.js";
import { h, fill, int } from "../dom.js";
import { spendChart } from "./spend.js";

export async function overview(el) {
  const [version, keys] = await Promise.all([readsConfig() ? get("/api/version") : null, get("/api/virtual-keys")]);
  const cards = [
    ["Virtual keys", int(keys.count)],
    ["Active keys", int(keys.virtual_keys.filter((k) => k.is_active).length)],
  ];
  if (version) {
    cards.push(["Config version", String(version.config_version)]);
    cards.push(["Store", version.store]);
  }
  if (readsConfig()) {
    const fleet = await get("/api/data-planes");
    cards.push(["Data planes", int(fleet.count)]);
  }
  const chart = h("div");
  fill(
    el,
    h("h1", {}, "Overview"),
    h("div", { class: "cards" }, cards.map(([label, value]) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value)))),
    chart,
  );
  await spendChart(chart);
}
