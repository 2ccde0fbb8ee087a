// Traces: recent, slowest, erroring and flagged traces; one trace as a
// waterfall with the repeated spans of an N+1 finding highlighted.

import { getJson, path } from "../api.js";
import { empty, h, section, table } from "../dom.js";
import { ago, count, nanos } from "../format.js";

const LISTS = { recent: "Recent", slowest: "Slowest", errors: "Erroring", flagged: "With N+1 findings" };
const LIMIT = 50;

function unavailable() {
  return h(
    "div",
    { class: "page traces" },
    h("div", { class: "page-head" }, h("h1", null, "Traces")),
    section("Traces", empty("No data yet: this agent does not assemble traces (/api/v1/traces is not in this build).")),
  );
}

function listView(body, list, ctx) {
  const picker = h(
    "div",
    { class: "picker", role: "group", "aria-label": "list" },
    Object.entries(LISTS).map(([key, name]) =>
      h("button", { type: "button", class: key === list ? "active" : "", onclick: () => ctx.setParam("list", key) }, name),
    ),
  );
  const traces = body ? body.traces : [];
  const rows = traces.map((t) =>
    h(
      "tr",
      { dataset: { trace: t.traceId }, class: t.error ? "error" : "" },
      h("td", null, h("a", { href: ctx.href("traces", t.traceId) }, t.traceId.slice(0, 16))),
      h("td", null, t.service),
      h("td", null, t.route),
      h("td", { class: "num", dataset: { field: "duration" } }, nanos(t.durationNanos)),
      h("td", { class: "num" }, count(t.spans)),
      h("td", null, t.error ? "error" : "", t.partial ? " partial" : ""),
      h("td", null, ago(t.startUnixNanos / 1e9)),
    ),
  );
  return h(
    "div",
    { class: "page traces" },
    h("div", { class: "page-head" }, h("h1", null, "Traces"), picker),
    section(
      LISTS[list],
      rows.length ? table(["trace", "service", "route", "duration", "spans", "", "started"], rows, { class: "trace-list" }) : empty("No traces held yet."),
    ),
  );
}

function depthOf(spans) {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const depth = new Map();
  const find = (span, seen = new Set()) => {
    if (depth.has(span.spanId)) return depth.get(span.spanId);
    const parent = span.parentId && byId.get(span.parentId);
    // A missing parent or a cycle puts the span at the top.
    const d = parent && !seen.has(parent.spanId) ? find(parent, seen.add(span.spanId)) + 1 : 0;
    depth.set(span.spanId, d);
    return d;
  };
  spans.forEach((s) => find(s));
  return depth;
}

// Parents before children, siblings by start time.
function ordered(spans) {
  const children = new Map();
  const ids = new Set(spans.map((s) => s.spanId));
  for (const s of spans) {
    const key = s.parentId && ids.has(s.parentId) ? s.parentId : "";
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(s);
  }
  for (const list of children.values()) list.sort((a, b) => a.startUnixNanos - b.startUnixNanos);
  const out = [];
  const seen = new Set();
  const walk = (key) => {
    for (const s of children.get(key) || []) {
      if (seen.has(s.spanId)) continue;
      seen.add(s.spanId);
      out.push(s);
      walk(s.spanId);
    }
  };
  walk("");
  // Spans only reachable through a cycle.
  for (const s of spans) if (!seen.has(s.spanId)) out.push(s);
  return out;
}

function waterfall(trace) {
  const spans = trace.spans;
  if (!spans.length) return empty("The trace holds no span.");
  const start = Math.min(...spans.map((s) => s.startUnixNanos));
  const end = Math.max(...spans.map((s) => s.endUnixNanos));
  const total = Math.max(1, end - start);
  const marked = new Map();
  for (const mark of trace.marks || []) {
    for (const id of mark.spanIds) marked.set(id, mark);
  }
  const depth = depthOf(spans);
  const rows = ordered(spans).map((span) => {
    const mark = marked.get(span.spanId);
    const left = ((span.startUnixNanos - start) / total) * 100;
    const width = Math.max(0.2, ((span.endUnixNanos - span.startUnixNanos) / total) * 100);
    const attributes = Object.entries(span.attributes || {});
    return h(
      "div",
      { class: `span-row ${mark ? "repeated" : ""} ${span.status === "error" ? "error" : ""}`, dataset: { span: span.spanId } },
      h(
        "details",
        { class: "span-name", style: { "padding-left": `${Math.min(depth.get(span.spanId), 12) * 12}px` } },
        h("summary", null, h("span", { class: "service" }, span.service), " ", span.name),
        h("dl", { class: "attributes" },
          h("dt", null, "kind"), h("dd", null, span.kind),
          h("dt", null, "status"), h("dd", null, span.status),
          mark ? [h("dt", null, "finding"), h("dd", null, `${mark.kind}: ${mark.template}`)] : null,
          attributes.map(([k, v]) => [h("dt", null, k), h("dd", null, String(v))]),
        ),
      ),
      h("div", { class: "span-track" }, h("span", { class: "span-bar", style: { left: `${left.toFixed(3)}%`, width: `${width.toFixed(3)}%` } })),
      h("div", { class: "num span-duration" }, nanos(span.endUnixNanos - span.startUnixNanos)),
    );
  });
  return h("div", { class: "waterfall" }, rows);
}

function traceView(trace, id, ctx) {
  if (!trace) {
    return h(
      "div",
      { class: "page traces" },
      h("div", { class: "page-head" }, h("h1", null, "Trace ", h("code", null, id)), h("a", { href: ctx.href("traces") }, "all traces")),
      section("Trace", empty("This trace is not held (only recent, slowest, erroring and flagged traces are kept).")),
    );
  }
  const marks = trace.marks || [];
  return h(
    "div",
    { class: "page traces" },
    h("div", { class: "page-head" }, h("h1", null, "Trace ", h("code", null, trace.traceId)), h("a", { href: ctx.href("traces") }, "all traces")),
    section(
      `${count(trace.spans.length)} spans · ${nanos(trace.durationNanos)}`,
      trace.partial ? h("p", { class: "hint" }, `Partial trace (${trace.completion}; ${trace.droppedSpans} spans dropped).`) : null,
      marks.length
        ? h("ul", { class: "marks" }, marks.map((m) => h("li", null, h("span", { class: "badge repeated" }, m.kind), ` ${m.spanIds.length} × `, h("code", null, m.template))))
        : null,
      waterfall(trace),
    ),
  );
}

// A held trace does not change: only the lists refresh.
export function refresh(route) {
  return !route.arg;
}

export async function render(ctx) {
  if (!ctx.features.traces) return unavailable();
  if (ctx.arg) {
    if (!/^[0-9a-fA-F]{32}$/.test(ctx.arg)) {
      return traceView(null, ctx.arg, ctx);
    }
    return traceView(await getJson(`/api/v1/traces/${ctx.arg}`), ctx.arg, ctx);
  }
  const list = LISTS[ctx.params.get("list")] ? ctx.params.get("list") : "recent";
  return listView(await getJson(path("/api/v1/traces", { list, limit: LIMIT })), list, ctx);
}
