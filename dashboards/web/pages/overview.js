// Overview: firing alerts, saturation gauges, every service and route with
// traffic, error ratio and p50/p95/p99, and charts over the window's buckets.

import { getJson, path } from "../api.js";
import { empty, h, section, table } from "../dom.js";
import { gauge, legend, lineChart, sparkline } from "../charts.js";
import { ago, count, percent, rate, seconds } from "../format.js";

const WINDOWS = ["1m", "5m", "15m", "1h"];
// The routes drawn in a service's latency chart: more would be unreadable.
const CHART_ROUTES = 5;

function windowPicker(current, setParam) {
  return h(
    "div",
    { class: "picker", role: "group", "aria-label": "window" },
    WINDOWS.map((w) =>
      h("button", { type: "button", class: w === current ? "active" : "", onclick: () => setParam("window", w) }, w),
    ),
  );
}

function latencyCells(latency) {
  return ["p50", "p95", "p99"].map((q) =>
    h("td", { class: "num", dataset: { field: q } }, latency ? seconds(latency[q]) : "–"),
  );
}

function signalCells(row) {
  return [
    h("td", { class: "num", dataset: { field: "requests" } }, count(row.requests)),
    h("td", { class: "num", dataset: { field: "rate" } }, rate(row.ratePerSecond)),
    h("td", { class: `num ${row.errorRatio > 0.05 ? "bad" : ""}`, dataset: { field: "errorRatio" } }, percent(row.errorRatio)),
    ...latencyCells(row.latency),
  ];
}

function alertsCard(alerts) {
  const firing = [];
  for (const rule of alerts.rules) {
    for (const instance of rule.instances || []) {
      if (instance.state === "firing") firing.push({ rule, instance });
    }
  }
  const body = firing.length
    ? table(
        ["alert", "signal", "target", "value", "threshold", "since"],
        firing.map(({ rule, instance }) =>
          h(
            "tr",
            { class: "firing", dataset: { alert: rule.name } },
            h("td", null, rule.name),
            h("td", null, rule.signal),
            h("td", null, [instance.service, instance.target].filter(Boolean).join(" ")),
            h("td", { class: "num" }, instance.value.toPrecision(3)),
            h("td", { class: "num" }, String(rule.above)),
            h("td", null, ago(instance.since, alerts.time)),
          ),
        ),
        { class: "alerts" },
      )
    : empty(alerts.rules.length ? `No alert firing (${alerts.rules.length} rules).` : "No alert rules configured ([[alerts.rules]]).");
  return section("Alerts", body);
}

function saturationCard(saturation) {
  const host = saturation.host;
  const gauges = [
    gauge("CPU", host.cpu),
    gauge("Memory", host.memory),
    ...host.disks.map((d) => gauge(`Disk ${d.mount}`, d.utilization)),
    ...saturation.pools.map((p) =>
      gauge(`Pool ${p.service}/${p.name}`, p.value, { detail: p.attributes || "" }),
    ),
  ];
  const appGauges = saturation.gauges.length
    ? table(
        ["service", "gauge", "value", "reported"],
        saturation.gauges.map((g) =>
          h("tr", null, h("td", null, g.service), h("td", null, [g.name, g.attributes].filter(Boolean).join(" ")), h("td", { class: "num" }, String(g.value)), h("td", null, ago(g.reported, saturation.time))),
        ),
      )
    : null;
  return section(
    "Saturation",
    h("div", { class: "gauges" }, gauges),
    saturation.pools.length ? null : h("p", { class: "hint" }, "No database pool reported (db.client.connection.count / .max)."),
    h("p", { class: "hint" }, `Load average ${host.load.map((l) => l.toFixed(2)).join(" · ")}`),
    appGauges,
  );
}

function serviceChart(routes) {
  const byTime = new Map();
  for (const route of routes) {
    for (const p of route.points) {
      const sum = byTime.get(p.time) || { requests: 0, errors: 0 };
      sum.requests += p.requests;
      sum.errors += p.errors;
      byTime.set(p.time, sum);
    }
  }
  const traffic = [
    { name: "requests", className: "s-requests", points: [...byTime].map(([t, v]) => [t, v.requests]) },
    { name: "errors", className: "s-errors", points: [...byTime].map(([t, v]) => [t, v.errors]) },
  ];
  const busiest = [...routes].sort((a, b) => b.requests - a.requests).slice(0, CHART_ROUTES);
  const latency = busiest.map((route, i) => ({
    name: `p95 ${route.route}`,
    className: `s-${i}`,
    points: route.points.filter((p) => p.p95 !== null && p.p95 !== undefined).map((p) => [p.time, p.p95]),
  }));
  return h(
    "div",
    { class: "charts" },
    h("figure", null, h("figcaption", null, "Requests and errors per bucket"), lineChart({ series: traffic, format: (v) => count(Math.round(v)), label: "requests and errors" }), legend(traffic)),
    h("figure", null, h("figcaption", null, `p95 latency, ${busiest.length} busiest routes`), lineChart({ series: latency, format: seconds, label: "p95 latency" }), legend(latency)),
  );
}

function serviceCard(service, routes, focus, setParam) {
  const rows = routes.map((route) =>
    h(
      "tr",
      { dataset: { service: service.service, route: route.route }, class: focus === route.route ? "focus" : "" },
      h("td", null, h("button", { type: "button", class: "link", onclick: () => setParam("focus", `${service.service} ${route.route}`) }, route.route)),
      ...signalCells(route),
      h("td", null, sparkline(route.points.map((p) => p.p95 || 0))),
    ),
  );
  const focused = routes.find((r) => r.route === focus);
  return section(
    `Service ${service.service}`,
    serviceChart(routes),
    focused ? routeDetail(focused, setParam) : null,
    table(["route", "requests", "rate", "errors", "p50", "p95", "p99", "p95 trend"], rows, { class: "routes" }),
  );
}

function routeDetail(route, setParam) {
  const points = route.points;
  const latency = [{ name: "p95", className: "s-0", points: points.map((p) => [p.time, p.p95 || 0]) }];
  const traffic = [
    { name: "requests", className: "s-requests", points: points.map((p) => [p.time, p.requests]) },
    { name: "errors", className: "s-errors", points: points.map((p) => [p.time, p.errors]) },
  ];
  return h(
    "div",
    { class: "route-detail" },
    h("h3", null, route.route, " ", h("button", { type: "button", class: "link", onclick: () => setParam("focus", "") }, "close")),
    h(
      "div",
      { class: "charts" },
      h("figure", null, h("figcaption", null, "p95 latency"), lineChart({ series: latency, format: seconds, label: `p95 of ${route.route}` })),
      h("figure", null, h("figcaption", null, "Requests and errors"), lineChart({ series: traffic, format: (v) => count(Math.round(v)), label: `traffic of ${route.route}` }), legend(traffic)),
    ),
  );
}

export async function render({ params, setParam }) {
  const window = WINDOWS.includes(params.get("window")) ? params.get("window") : "1m";
  const [services, saturation, alerts] = await Promise.all([
    getJson(path("/api/v1/services", { window })),
    getJson("/api/v1/saturation"),
    getJson("/api/v1/alerts"),
  ]);
  const list = services ? services.services : [];
  const routes = await Promise.all(
    list.map((s) => getJson(path(`/api/v1/services/${encodeURIComponent(s.service)}/routes`, { window }))),
  );
  const [focusService, ...focusRoute] = (params.get("focus") || "").split(" ");
  const summary = list.length
    ? table(
        ["service", "routes", "requests", "rate", "errors", "p50", "p95", "p99"],
        list.map((s) =>
          h("tr", { dataset: { service: s.service } }, h("td", null, s.service), h("td", { class: "num", dataset: { field: "routes" } }, count(s.routes)), ...signalCells(s)),
        ),
        { class: "services" },
      )
    : empty(`No requests in the last ${window}. Send OTLP spans to the agent (SERVER or CONSUMER spans count).`);
  return h(
    "div",
    { class: "page overview" },
    h("div", { class: "page-head" }, h("h1", null, "Overview"), windowPicker(window, setParam)),
    h("div", { class: "grid2" }, alertsCard(alerts), saturationCard(saturation)),
    section(`Services, last ${window}`, summary),
    list.map((s, i) =>
      routes[i] ? serviceCard(s, routes[i].routes, focusService === s.service ? focusRoute.join(" ") : "", setParam) : null,
    ),
  );
}
