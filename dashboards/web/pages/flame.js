// Flame graphs: pick a service, a route (spans) or labels (CPU), a window, a
// source and a mode; the agent renders the interactive SVG. It is fetched
// with the token and shown from a blob: URL in a frame, where its own
// script (zoom, search) runs.

import { getJson, getText, path } from "../api.js";
import { empty, h, section } from "../dom.js";
import { clock } from "../format.js";

const WINDOWS = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600 };
const MODES = { flame: "flame", icicle: "icicle", chart: "flame chart", diff: "differential (vs the window before)" };

let shownUrl = null;

function select(name, options, current, onchange) {
  return h(
    "label",
    null,
    `${name} `,
    h(
      "select",
      { name, onchange: (event) => onchange(event.target.value) },
      options.map(([value, text]) => h("option", { value, selected: value === current }, text)),
    ),
  );
}

function overlaps(series, from, to) {
  return series.some((s) => s.from < to && s.to >= from);
}

export const refresh = false;

export async function render(ctx) {
  const head = h("div", { class: "page-head" }, h("h1", null, "Flame graphs"));
  if (!ctx.features.flamegraph) {
    return h("div", { class: "page flame" }, head, section("Flame graphs", empty("No data yet: this agent does not build flame graphs (/api/v1/flamegraph is not in this build).")));
  }
  const listing = await getJson("/api/v1/flamegraph/series");
  const all = listing ? listing.series : [];
  const params = ctx.params;
  const source = params.get("source") === "cpu" ? "cpu" : "spans";
  const ofSource = all.filter((s) => s.source === source);
  const services = [...new Set(ofSource.map((s) => s.service))].sort();
  const service = services.includes(params.get("service")) ? params.get("service") : services[0] || "";
  const detailKey = source === "spans" ? "route" : "labels";
  const details = [...new Set(ofSource.filter((s) => s.service === service).map((s) => s[detailKey]))].sort();
  const detail = details.includes(params.get(detailKey)) ? params.get(detailKey) : "";
  const windowName = WINDOWS[params.get("window")] ? params.get("window") : "15m";
  const mode = MODES[params.get("mode")] ? params.get("mode") : "flame";

  const form = h(
    "div",
    { class: "flame-form" },
    select("source", [["spans", "spans (self time)"], ["cpu", "CPU profiles"]], source, (v) => ctx.setParam("source", v)),
    select("service", services.map((s) => [s, s]), service, (v) => ctx.setParam("service", v)),
    select(detailKey, [["", source === "spans" ? "all routes" : "all labels"], ...details.map((d) => [d, d])], detail, (v) => ctx.setParam(detailKey, v)),
    select("window", Object.keys(WINDOWS).map((w) => [w, `last ${w}`]), windowName, (v) => ctx.setParam("window", v)),
    select("mode", Object.entries(MODES), mode, (v) => ctx.setParam("mode", v)),
    h("button", { type: "button", onclick: () => ctx.setParam("at", String(Date.now())) }, "Reload"),
  );
  if (!service) {
    return h("div", { class: "page flame" }, head, form, section("Flame graph", empty(source === "spans" ? "No span stacks yet: send traces to the agent." : "No CPU profiles yet: POST pprof or folded stacks to /v1/profiles.")));
  }

  const length = WINDOWS[windowName];
  const to = Math.floor(Date.now() / 1000) + 1;
  const from = to - length;
  const matching = ofSource.filter((s) => s.service === service && (!detail || s[detailKey] === detail));
  // Asking for an empty window answers 404, which the browser logs: say it here instead.
  const missing = !overlaps(matching, from, to)
    ? `No samples for ${service} between ${clock(from)} and ${clock(to)}.`
    : mode === "diff" && !overlaps(matching, from - length, from)
      ? `No samples in the window before (${clock(from - length)} to ${clock(from)}) to compare with.`
      : null;
  if (missing) {
    return h("div", { class: "page flame" }, head, form, section("Flame graph", empty(missing)));
  }
  const query = { source, service, [detailKey]: detail, from, to };
  if (mode === "diff") {
    Object.assign(query, { mode: "flame", diff_from: from - length, diff_to: from });
  } else {
    query.mode = mode;
  }
  const svg = await getText(path("/api/v1/flamegraph", query));
  if (svg === null) {
    return h("div", { class: "page flame" }, head, form, section("Flame graph", empty("No samples in this window.")));
  }
  if (shownUrl) URL.revokeObjectURL(shownUrl);
  shownUrl = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
  return h(
    "div",
    { class: "page flame" },
    head,
    form,
    section(
      `${MODES[mode]} · ${service}${detail ? ` · ${detail}` : ""} · last ${windowName}`,
      h("iframe", { class: "flame-frame", src: shownUrl, title: "flame graph", dataset: { bytes: String(svg.length) } }),
      h("p", { class: "hint" }, "Click a frame to zoom, Ctrl+F to search inside the graph."),
    ),
  );
}
