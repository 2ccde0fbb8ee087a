// N+1 findings, sorted by the time they waste: what batching would have
// saved in the latest occurrence, times the traces it was found in.

import { getJson } from "../api.js";
import { empty, h, section, table } from "../dom.js";
import { ago, count, nanos } from "../format.js";

const KINDS = {
  n_plus_one_query: "N+1 query",
  n_plus_one_http: "N+1 HTTP",
  repeated_query: "repeated query",
  repeated_http: "repeated HTTP",
};

// An estimate: the latest occurrence's saving for every trace it was seen in.
export function wasted(finding) {
  return finding.savedNanos * finding.occurrences;
}

export async function render(ctx) {
  const head = h("div", { class: "page-head" }, h("h1", null, "N+1 findings"));
  if (!ctx.features.findings) {
    return h("div", { class: "page findings" }, head, section("Findings", empty("No data yet: this agent does not detect N+1 patterns (/api/v1/findings is not in this build).")));
  }
  const body = await getJson("/api/v1/findings");
  const findings = body ? [...body.findings].sort((a, b) => wasted(b) - wasted(a)) : [];
  const cards = findings.map((f) =>
    h(
      "article",
      { class: "finding card", dataset: { finding: f.id } },
      h(
        "header",
        null,
        h("span", { class: "badge repeated" }, KINDS[f.kind] || f.kind),
        h("span", { class: "where" }, ` ${f.service} · ${f.route}`),
        h("span", { class: "wasted", dataset: { field: "wasted" } }, `${nanos(wasted(f))} wasted`),
      ),
      h("pre", { class: "template", dataset: { field: "template" } }, f.template),
      f.sourceTemplate ? h("p", { class: "hint" }, "after ", h("code", null, f.sourceTemplate)) : null,
      h(
        "dl",
        { class: "facts" },
        h("dt", null, "calls in the latest trace"), h("dd", { dataset: { field: "count" } }, count(f.count)),
        h("dt", null, "typical / worst"), h("dd", null, `${count(f.typicalCount)} / ${count(f.worstCount)}`),
        h("dt", null, "traces"), h("dd", { dataset: { field: "occurrences" } }, count(f.occurrences)),
        h("dt", null, "per call"), h("dd", null, nanos(f.perCallNanos)),
        h("dt", null, "total in the latest trace"), h("dd", null, nanos(f.totalDurationNanos)),
        h("dt", null, "saved by batching"), h("dd", null, nanos(f.savedNanos)),
        h("dt", null, "system"), h("dd", null, f.system),
        h("dt", null, "inside"), h("dd", null, f.parentSpanName),
        h("dt", null, "first seen"), h("dd", null, ago(f.firstSeenUnixMs / 1000)),
        h("dt", null, "last seen"), h("dd", null, ago(f.lastSeenUnixMs / 1000)),
      ),
      h("p", { class: "fix" }, h("strong", null, "Fix to consider: "), f.fix),
      ctx.features.traces && f.exampleTraceId
        ? h("a", { href: ctx.href("traces", f.exampleTraceId), dataset: { field: "example" } }, "example trace")
        : null,
    ),
  );
  return h(
    "div",
    { class: "page findings" },
    head,
    cards.length ? cards : section("Findings", empty("No N+1 or repeated-call pattern found yet.")),
  );
}
