// Talks to the agent's JSON API with the admin token, when one was given.
// A 401 asks for the token; a 404 is "no data", never an exception.

const TOKEN_KEY = "telltale.adminToken";

export class NeedToken extends Error {
  constructor() {
    super("the agent requires its admin token");
  }
}

export class ApiError extends Error {
  constructor(path, status, reason) {
    super(`${path}: ${status} ${reason}`);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function request(path) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new NeedToken();
  return response;
}

async function reason(response) {
  try {
    const body = await response.json();
    return body.error || body.reason || response.statusText;
  } catch {
    return response.statusText;
  }
}

// The JSON at `path`, or null when the agent answers 404 (nothing there yet).
export async function getJson(path) {
  const response = await request(path);
  if (response.status === 404) return null;
  if (!response.ok) throw new ApiError(path, response.status, await reason(response));
  return response.json();
}

// The body at `path` as text (an SVG), or null on 404.
export async function getText(path) {
  const response = await request(path);
  if (response.status === 404) return null;
  if (!response.ok) throw new ApiError(path, response.status, await reason(response));
  return response.text();
}

// `/api/v1/...` with query parameters, leaving out empty ones.
export function path(base, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") query.set(k, v);
  }
  const text = query.toString();
  return text ? `${base}?${text}` : base;
}
