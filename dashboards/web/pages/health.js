// Health: the aggregate (ready, draining), each check's status and observed
// values, and a timeline of status transitions.

import { getJson } from "../api.js";
import { empty, h, section, table } from "../dom.js";
import { timeline } from "../charts.js";
import { clock, measurement, millis } from "../format.js";

function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

// Transitions into per-check segments, from the agent's start to now. A
// check's first status is the `from` of its first transition.
function segments(checks, transitions, started, now) {
  return checks.map((check) => {
    const mine = transitions.filter((t) => t.check === check.name).sort((a, b) => a.at - b.at);
    const parts = [];
    let since = started;
    let status = mine.length ? mine[0].from : check.status;
    for (const t of mine) {
      parts.push({ from: since, to: t.at, status });
      since = t.at;
      status = t.to;
    }
    parts.push({ from: since, to: now, status });
    return { name: check.name, segments: parts.filter((p) => p.to > p.from || parts.length === 1) };
  });
}

export async function render() {
  const [detail, history] = await Promise.all([getJson("/api/v1/health"), getJson("/api/v1/health/history")]);
  const now = Date.now() / 1000;
  const started = Date.parse(detail.started) / 1000;
  const transitions = history.transitions.map((t) => ({ ...t, at: Date.parse(t.time) / 1000 }));
  const worst = detail.checks.some((c) => c.critical && c.status === "fail")
    ? "fail"
    : detail.checks.some((c) => c.status !== "pass")
      ? "warn"
      : "pass";
  const aggregate = h(
    "div",
    { class: "aggregate" },
    h("div", { class: "big", dataset: { field: "status" } }, statusBadge(worst)),
    h("dl", null,
      h("dt", null, "Ready"), h("dd", { dataset: { field: "ready" } }, detail.ready ? "yes" : "no"),
      h("dt", null, "Draining"), h("dd", { dataset: { field: "draining" } }, detail.draining ? (detail.exitScheduled ? "yes, exit scheduled" : "yes") : "no"),
      h("dt", null, "Started"), h("dd", null, clock(started)),
    ),
  );
  const rows = detail.checks.map((c) =>
    h(
      "tr",
      { dataset: { check: c.name } },
      h("td", null, c.name),
      h("td", null, c.kind),
      h("td", null, c.critical ? "critical" : "non-critical"),
      h("td", { dataset: { field: "status" } }, statusBadge(c.status)),
      h("td", { dataset: { field: "observed" } }, c.measurements.map((m) => h("span", { class: "measure" }, `${m.name} ${measurement(m.value, m.unit)}`))),
      h("td", { class: "output" }, c.output || ""),
      h("td", { class: "num" }, millis(c.lastDurationMs)),
      h("td", null, c.time ? clock(Date.parse(c.time) / 1000) : "not run yet"),
    ),
  );
  const history_rows = [...transitions].reverse().map((t) =>
    h("tr", null, h("td", null, clock(t.at)), h("td", null, t.check), h("td", null, statusBadge(t.from), " → ", statusBadge(t.to)), h("td", { class: "output" }, t.output || "")),
  );
  return h(
    "div",
    { class: "page health" },
    h("div", { class: "page-head" }, h("h1", null, "Health")),
    section("Aggregate", aggregate),
    section("Checks", detail.checks.length ? table(["check", "kind", "", "status", "observed", "output", "took", "last run"], rows, { class: "checks" }) : empty("No checks configured.")),
    section(
      "Timeline",
      detail.checks.length ? timeline(segments(detail.checks, transitions, started, now), started, now) : empty("No checks."),
      history.dropped ? h("p", { class: "hint" }, `${history.dropped} older transitions were dropped.`) : null,
    ),
    section("Transitions", history_rows.length ? table(["time", "check", "change", "output"], history_rows) : empty("No transitions yet.")),
  );
}
