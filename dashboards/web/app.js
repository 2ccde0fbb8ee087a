// The dashboard shell: hash navigation (#/page/arg?key=value), the refresh
// loop, the admin token prompt. Each page module exports `render(ctx)`,
// returning the page's content, and optionally `refresh`: false (or a
// function of the route returning false) for views that do not change or
// that the user builds (a trace, the flame graph).

import { ApiError, NeedToken, getJson, setToken, token } from "./api.js";
import { empty, h } from "./dom.js";
import * as overview from "./pages/overview.js";
import * as health from "./pages/health.js";
import * as traces from "./pages/traces.js";
import * as findings from "./pages/findings.js";
import * as vitals from "./pages/vitals.js";
import * as flame from "./pages/flame.js";

const PAGES = { overview, health, traces, findings, vitals, flame };
const REFRESH_MS = 5000;

let features = null;
let timer = null;
let generation = 0;

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [pathPart, queryPart = ""] = hash.split("?");
  const [name, ...rest] = pathPart.split("/");
  return {
    name: PAGES[name] ? name : "overview",
    arg: rest.map(decodeURIComponent).join("/"),
    params: new URLSearchParams(queryPart),
  };
}

// A link within the dashboard.
export function href(name, arg = "", params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const tail = arg ? `/${encodeURIComponent(arg)}` : "";
  const q = query.toString();
  return `#/${name}${tail}${q ? `?${q}` : ""}`;
}

// Changes one query parameter of the current page.
export function setParam(key, value) {
  const { name, arg, params } = route();
  const next = Object.fromEntries(params);
  next[key] = value;
  location.hash = href(name, arg, next);
}

function setStatus(text, className = "") {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = `status ${className}`;
}

function askToken(refused) {
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-error").hidden = !refused;
  if (!dialog.open) dialog.showModal();
  document.getElementById("token-input").focus();
}

async function loadFeatures() {
  const index = await getJson("/api");
  features = (index && index.features) || {};
}

async function show() {
  const mine = ++generation;
  clearTimeout(timer);
  const current = route();
  const page = PAGES[current.name];
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === current.name);
  }
  const main = document.getElementById("main");
  try {
    if (features === null) await loadFeatures();
    const content = await page.render({ arg: current.arg, params: current.params, features, href, setParam });
    if (mine !== generation) return;
    const scroll = window.scrollY;
    main.replaceChildren(content);
    window.scrollTo(0, scroll);
    document.body.dataset.page = current.name;
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
    // Time to first render with data, for benchmarks and curious engineers:
    // performance.getEntriesByName("telltale:first-render").
    if (document.body.dataset.rendered === "1") performance.mark("telltale:first-render");
    setStatus(`updated ${new Date().toLocaleTimeString("en-GB", { hour12: false })}`);
    document.getElementById("forget-token").hidden = !token();
  } catch (error) {
    if (mine !== generation) return;
    if (error instanceof NeedToken) {
      main.replaceChildren(empty("This agent requires its admin token."));
      setStatus("token needed", "bad");
      askToken(Boolean(token()));
      return;
    }
    // Keep the last good view; say what failed.
    const message = error instanceof ApiError ? error.message : `cannot reach the agent (${error.message})`;
    setStatus(message, "bad");
    if (!document.body.dataset.rendered) main.replaceChildren(empty(message));
  }
  const again = typeof page.refresh === "function" ? page.refresh(current) : page.refresh !== false;
  if (again && mine === generation) {
    timer = setTimeout(show, REFRESH_MS);
  }
}

document.getElementById("token-form").addEventListener("submit", () => {
  const input = document.getElementById("token-input");
  setToken(input.value.trim());
  input.value = "";
  features = null;
  show();
});

document.getElementById("forget-token").addEventListener("click", () => {
  setToken(null);
  features = null;
  show();
});

window.addEventListener("hashchange", show);
show();
