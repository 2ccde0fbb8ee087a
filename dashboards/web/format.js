// How numbers look on the dashboard. The end-to-end test formats the API's
// values with the same rules to find them in the page.

// A duration in milliseconds: 3 significant digits up to 1 s, then seconds.
export function millis(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  if (ms === 0) return "0 ms";
  return `${ms.toFixed(2)} ms`;
}

export function seconds(s) {
  return s === null || s === undefined ? "–" : millis(s * 1000);
}

export function nanos(ns) {
  return ns === null || ns === undefined ? "–" : millis(ns / 1e6);
}

// A 0–1 ratio as a percentage with one decimal.
export function percent(ratio) {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "–";
  return `${(ratio * 100).toFixed(1)} %`;
}

// Requests per second.
export function rate(perSecond) {
  if (perSecond >= 100) return `${perSecond.toFixed(0)}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  return `${perSecond.toFixed(2)}/s`;
}

export function count(n) {
  return Number(n).toLocaleString("en-US");
}

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

// A Unix time in seconds as local HH:MM:SS (the date too when not today).
export function clock(unixSeconds) {
  const date = new Date(unixSeconds * 1000);
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString("en-GB", { hour12: false });
  return sameDay ? time : `${date.toISOString().slice(0, 10)} ${time}`;
}

// How long ago, from a Unix time in seconds.
export function ago(unixSeconds, now = Date.now() / 1000) {
  const d = Math.max(0, now - unixSeconds);
  if (d < 90) return `${Math.round(d)} s ago`;
  if (d < 5400) return `${Math.round(d / 60)} min ago`;
  if (d < 172800) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}

// A web vital's value in its unit (CLS has none).
export function vital(name, value) {
  return name === "CLS" ? value.toFixed(3) : millis(value);
}

// A measurement from a health check, in its unit.
export function measurement(value, unit) {
  if (unit === "bytes") return bytes(value);
  if (unit === "percent") return `${value.toFixed(1)} %`;
  if (unit === "ms") return millis(value);
  if (unit === "s") return seconds(value);
  return `${value} ${unit || ""}`.trim();
}
