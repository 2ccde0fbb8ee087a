/* Telltale RUM: Core Web Vitals and navigation timing of this page load,
 * sent to the Telltale agent that served this script, as one text/plain
 * beacon each time the page is hidden (values that changed since only).
 * No dependencies; computed as Google's web-vitals library does. */
(function () {
  "use strict";
  var P = window.performance;
  if (!P || !P.getEntriesByType || !window.PerformanceObserver || !navigator.sendBeacon) return;
  var script = document.currentScript;
  var endpoint = new URL(__TELLTALE_RUM_PATH__, script ? script.src : location.href).href;
  var app = script && script.getAttribute("data-app");
  var nav = P.getEntriesByType("navigation")[0];
  var activation = (nav && nav.activationStart) || 0;
  var loadId = Date.now() + "-" + Math.floor(Math.random() * 1e12);
  var values = {};   // name -> latest value
  var sent = {};     // name -> value last sent
  var navSent = false;

  function since(t) { return Math.max(t - activation, 0); }
  function observe(type, callback, options) {
    try {
      var o = new PerformanceObserver(function (list) { callback(list.getEntries()); });
      var opts = { type: type, buffered: true };
      for (var k in options) opts[k] = options[k];
      o.observe(opts);
      return o;
    } catch (e) { return null; }
  }

  // TTFB: from the navigation entry.
  if (nav && nav.responseStart > 0) values.TTFB = since(nav.responseStart);

  // FCP.
  observe("paint", function (entries) {
    entries.forEach(function (e) {
      if (e.name === "first-contentful-paint") values.FCP = since(e.startTime);
    });
  });

  // LCP: the last candidate before the first input or hide.
  var lcpFinal = false;
  var lcpObserver = observe("largest-contentful-paint", function (entries) {
    if (lcpFinal) return;
    var last = entries[entries.length - 1];
    if (last) values.LCP = since(last.startTime);
  });
  function finalizeLcp() {
    if (lcpFinal) return;
    if (lcpObserver && lcpObserver.takeRecords) {
      var rest = lcpObserver.takeRecords();
      if (rest.length) values.LCP = since(rest[rest.length - 1].startTime);
    }
    lcpFinal = true;
  }
  ["keydown", "click", "pointerdown"].forEach(function (type) {
    addEventListener(type, function () { setTimeout(finalizeLcp, 0); }, { once: true, capture: true });
  });

  // CLS: the largest session window (shifts under 1 s apart, at most 5 s long).
  var session = 0, sessionFirst = 0, sessionLast = 0;
  values.CLS = 0;
  observe("layout-shift", function (entries) {
    entries.forEach(function (e) {
      if (e.hadRecentInput) return;
      if (session && e.startTime - sessionLast < 1000 && e.startTime - sessionFirst < 5000) {
        session += e.value;
      } else {
        session = e.value;
        sessionFirst = e.startTime;
      }
      sessionLast = e.startTime;
      if (session > values.CLS) values.CLS = session;
    });
  });

  // INP: the slowest interaction (the 98th percentile once there are 50).
  var interactions = {};
  function inp(entries) {
    entries.forEach(function (e) {
      if (!e.interactionId) return;
      var prev = interactions[e.interactionId] || 0;
      if (e.duration > prev) interactions[e.interactionId] = e.duration;
    });
    var all = Object.keys(interactions).map(function (k) { return interactions[k]; });
    if (!all.length) return;
    all.sort(function (a, b) { return b - a; });
    values.INP = all[Math.min(all.length - 1, Math.floor(all.length / 50))];
  }
  observe("event", inp, { durationThreshold: 16 });
  observe("first-input", function (entries) {
    inp(entries);
    var e = entries[0];
    if (e && values.FID === undefined) values.FID = e.processingStart - e.startTime;
  });

  function navigation() {
    if (!nav) return null;
    var out = {
      dns: nav.domainLookupEnd - nav.domainLookupStart,
      tcp: nav.connectEnd - nav.connectStart,
      tls: nav.secureConnectionStart > 0 ? nav.connectEnd - nav.secureConnectionStart : 0,
      request: nav.responseStart - nav.requestStart,
      download: nav.responseEnd - nav.responseStart
    };
    if (nav.domComplete > 0) out.dom = nav.domComplete - nav.responseEnd;
    if (nav.loadEventEnd > 0) out.load = nav.loadEventEnd - nav.startTime;
    for (var k in out) if (!(out[k] >= 0)) delete out[k];
    return out;
  }

  // The backend trace of this document, from the SDK's Server-Timing header:
  // traceparent;desc="00-<trace id>-<span id>-01".
  function traceId() {
    var timings = (nav && nav.serverTiming) || [];
    for (var i = 0; i < timings.length; i++) {
      if (timings[i].name === "traceparent") {
        var parts = String(timings[i].description).split("-");
        if (parts.length === 4 && /^[0-9a-f]{32}$/.test(parts[1])) return parts[1];
      }
    }
    return undefined;
  }

  function deviceClass() {
    var d = navigator.userAgentData;
    return d && typeof d.mobile === "boolean" && d.mobile ? "mobile" : undefined;
  }

  function send() {
    finalizeLcp();
    var metrics = [];
    for (var name in values) {
      var v = values[name];
      if (typeof v !== "number" || !(v >= 0) || sent[name] === v) continue;
      metrics.push({ name: name, value: v, id: "tt-" + name + "-" + loadId,
                     navigationType: nav ? nav.type : undefined });
    }
    if (!metrics.length && navSent) return;
    var body = { page: location.href, metrics: metrics };
    if (app) body.app = app;
    var device = deviceClass();
    if (device) body.device = device;
    var c = navigator.connection;
    if (c && c.effectiveType) body.connection = c.effectiveType;
    var trace = traceId();
    if (trace) body.traceId = trace;
    if (!navSent) {
      var n = navigation();
      if (n) body.nav = n;
    }
    // A string body: sent as text/plain, which needs no CORS preflight.
    if (navigator.sendBeacon(endpoint, JSON.stringify(body))) {
      navSent = true;
      metrics.forEach(function (m) { sent[m.name] = m.value; });
    }
  }

  addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") send();
  }, true);
  // Safari does not always fire visibilitychange when a page is unloaded.
  addEventListener("pagehide", send, true);
})();
