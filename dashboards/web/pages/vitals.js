// Web vitals: p75 of each vital per page against Google's thresholds, the
// good / needs-improvement / poor shares, per device; one page's navigation
// breakdown, its last 15 minutes against the hour, and its slowest loads
// linked to their backend traces.

import { getJson, path } from "../api.js";
import { empty, h, section, table } from "../dom.js";
import { shareBar } from "../charts.js";
import { ago, count, millis, vital } from "../format.js";

// Google's thresholds: good at or under the first, poor over the second.
const THRESHOLDS = { LCP: [2500, 4000], INP: [200, 500], CLS: [0.1, 0.25], FCP: [1800, 3000], TTFB: [800, 1800] };
const VITALS = Object.keys(THRESHOLDS);
const NAVIGATION = ["dns", "tcp", "tls", "request", "download", "dom", "load"];
const DEVICES = ["mobile", "tablet", "desktop"];
const WINDOWS = ["15m", "1h"];

function rating(name, p75) {
  const [good, poor] = THRESHOLDS[name];
  return p75 <= good ? "good" : p75 <= poor ? "needs-improvement" : "poor";
}

function vitalCell(name, summary) {
  if (!summary) return h("td", { class: "vital", dataset: { vital: name } }, "–");
  const r = summary.rating || rating(name, summary.p75);
  return h(
    "td",
    { class: `vital rating-${r}`, dataset: { vital: name } },
    h("span", { class: "p75", dataset: { field: "p75" } }, vital(name, summary.p75)),
    shareBar(summary.good || 0, summary.needsImprovement || 0, summary.poor || 0),
    h("span", { class: "n" }, `n=${count(summary.count)}`),
  );
}

function pickers(ctx, window, device) {
  const button = (key, value, current, text) =>
    h("button", { type: "button", class: value === current ? "active" : "", onclick: () => ctx.setParam(key, value) }, text);
  return h(
    "div",
    { class: "pickers" },
    h("div", { class: "picker", role: "group", "aria-label": "window" }, WINDOWS.map((w) => button("window", w, window, w))),
    h("div", { class: "picker", role: "group", "aria-label": "device" }, button("device", "", device, "all devices"), DEVICES.map((d) => button("device", d, device, d))),
  );
}

function thresholdsNote() {
  return h("p", { class: "hint" }, "p75 against Google's thresholds: ", VITALS.map((v) => `${v} ${vital(v, THRESHOLDS[v][0])} / ${vital(v, THRESHOLDS[v][1])}`).join(" · "));
}

async function listView(ctx, window, device) {
  const body = await getJson(path("/api/v1/rum/pages", { window, device }));
  const pages = body ? body.pages : [];
  const rows = pages.map((p) =>
    h(
      "tr",
      { dataset: { app: p.app, page: p.page } },
      h("td", null, p.app),
      h("td", null, h("a", { href: ctx.href("vitals", p.page, { app: p.app, window }) }, p.page)),
      VITALS.map((v) => vitalCell(v, p.vitals[v])),
    ),
  );
  return h(
    "div",
    { class: "page vitals" },
    h("div", { class: "page-head" }, h("h1", null, "Web vitals"), pickers(ctx, window, device)),
    section(
      `Pages, last ${window}`,
      thresholdsNote(),
      rows.length ? table(["app", "page", ...VITALS], rows, { class: "rum-pages" }) : empty("No beacons yet: include the agent's /rum.js in your pages (see [rum] in the configuration)."),
    ),
  );
}

function navigationBar(navigation) {
  const phases = NAVIGATION.filter((n) => navigation[n]);
  const total = phases.reduce((sum, n) => sum + navigation[n].p75, 0);
  if (!total) return empty("No navigation timing yet.");
  return h(
    "div",
    null,
    h("div", { class: "nav-bar" }, phases.map((n) => h("span", { class: `phase phase-${n}`, style: { width: `${((navigation[n].p75 / total) * 100).toFixed(2)}%` }, title: `${n} ${millis(navigation[n].p75)}` }))),
    table(
      ["phase", "p50", "p75", "p95", "count"],
      phases.map((n) =>
        h("tr", { dataset: { phase: n } }, h("td", null, h("span", { class: `key phase-${n}` }, n)), h("td", { class: "num" }, millis(navigation[n].p50)), h("td", { class: "num", dataset: { field: "p75" } }, millis(navigation[n].p75)), h("td", { class: "num" }, millis(navigation[n].p95)), h("td", { class: "num" }, count(navigation[n].count))),
      ),
    ),
  );
}

function trend(recent, hour) {
  const rows = VITALS.filter((v) => hour.vitals[v]).map((v) => {
    const now = recent && recent.vitals[v];
    const before = hour.vitals[v];
    const change = now ? (now.p75 - before.p75) / (before.p75 || 1) : null;
    return h(
      "tr",
      { dataset: { vital: v } },
      h("td", null, v),
      h("td", { class: `num rating-${now ? now.rating || rating(v, now.p75) : ""}` }, now ? vital(v, now.p75) : "–"),
      h("td", { class: `num rating-${before.rating || rating(v, before.p75)}` }, vital(v, before.p75)),
      h("td", { class: `num ${change > 0.1 ? "bad" : change < -0.1 ? "good" : ""}` }, change === null ? "–" : `${change > 0 ? "+" : ""}${(change * 100).toFixed(0)} %`),
    );
  });
  return table(["vital", "p75 last 15 min", "p75 last hour", "change"], rows, { class: "trend" });
}

async function pageView(ctx, window) {
  const app = ctx.params.get("app") || "";
  const page = ctx.arg;
  // The lists say whether the page has data in each window, so the detail is
  // only asked for when it exists (a 404 would show in the browser console).
  const [recentList, hourList] = await Promise.all([
    getJson(path("/api/v1/rum/pages", { window: "15m", app })),
    getJson(path("/api/v1/rum/pages", { window: "1h", app })),
  ]);
  const find = (list) => (list ? list.pages.find((p) => p.page === page && p.app === app) : null) || null;
  const recent = find(recentList);
  const hour = find(hourList);
  const present = window === "15m" ? recent : hour;
  const encoded = page.replace(/^\//, "").split("/").map(encodeURIComponent).join("/");
  const detail = present ? await getJson(path(`/api/v1/rum/pages/${encoded}`, { app, window })) : null;
  const head = h("div", { class: "page-head" }, h("h1", null, "Web vitals ", h("code", null, page)), h("a", { href: ctx.href("vitals", "", { window }) }, "all pages"));
  if (!detail) {
    return h("div", { class: "page vitals" }, head, section(page, empty(`No beacons for this page in the last ${window}.`)));
  }
  const d = detail.page;
  const devices = Object.entries(d.devices).map(([device, vitals]) =>
    h("tr", { dataset: { device } }, h("td", null, device), VITALS.map((v) => vitalCell(v, vitals[v]))),
  );
  const loads = d.slowestLoads.map((load) =>
    h(
      "tr",
      { dataset: { trace: load.traceId } },
      h("td", { class: "num" }, millis(load.millis)),
      h("td", null, load.measure),
      h("td", null, load.device),
      h("td", null, ago(load.time, detail.time)),
      h("td", null, ctx.features.traces ? h("a", { href: ctx.href("traces", load.traceId) }, load.traceId) : h("code", null, load.traceId)),
    ),
  );
  return h(
    "div",
    { class: "page vitals" },
    head,
    section(`${d.app} · last ${window}`, thresholdsNote(), table(VITALS, [h("tr", { dataset: { page: d.page } }, VITALS.map((v) => vitalCell(v, d.vitals[v])))], { class: "rum-page" })),
    h("div", { class: "grid2" }, section("By device", devices.length ? table(["device", ...VITALS], devices) : empty("No device data.")), section("Trend", hour ? trend(recent, hour) : empty("No data."))),
    section("Navigation breakdown (p75)", navigationBar(d.navigation)),
    section("Slowest page loads with a backend trace", loads.length ? table(["time", "measure", "device", "when", "trace"], loads) : empty("No slow load carried a trace id (Server-Timing: traceparent).")),
  );
}

export async function render(ctx) {
  const window = WINDOWS.includes(ctx.params.get("window")) ? ctx.params.get("window") : "1h";
  const device = DEVICES.includes(ctx.params.get("device")) ? ctx.params.get("device") : "";
  if (!ctx.features.rum) {
    return h("div", { class: "page vitals" }, h("div", { class: "page-head" }, h("h1", null, "Web vitals")), section("Web vitals", empty("No data yet: this agent does not collect web vitals (/api/v1/rum/pages is not in this build).")));
  }
  return ctx.arg ? pageView(ctx, window) : listView(ctx, window, device);
}
