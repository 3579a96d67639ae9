// The task function's HTTP API, called with the signed-in user's token.

const base = document.querySelector('meta[name="dwp-api"]')?.content || "";
export const streams = document.querySelector('meta[name="dwp-streams"]')?.content || "/api/v1/stream";

// ApiError carries an RFC 9457 problem: status, title, detail and field errors.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
  get denied() { return this.status === 403; }
}

let token = sessionStorage.getItem("dwp.token") || "";

export function signedIn() { return token !== ""; }

export function currentToken() { return token; }

export function setToken(t) {
  token = t;
  if (t) sessionStorage.setItem("dwp.token", t);
  else sessionStorage.removeItem("dwp.token");
}

export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(base + path, init);
  } catch (e) {
    throw new ApiError(0, { title: "The task function cannot be reached", detail: `The task function cannot be reached (${e.message}).` });
  }
  const type = res.headers.get("Content-Type") || "";
  if (!res.ok) {
    let problem = { title: res.statusText };
    if (type.includes("json")) problem = await res.json().catch(() => problem);
    throw new ApiError(res.status, problem);
  }
  if (res.status === 204) return null;
  return type.includes("json") ? res.json() : res.text();
}

// session puts the token into the router's cookie, which EventSource sends.
export async function openSession(t) {
  const res = await fetch("/api/v1/session", { method: "POST", headers: { Authorization: `Bearer ${t}` }, credentials: "same-origin" });
  if (!res.ok) {
    const p = await res.json().catch(() => ({ title: res.statusText }));
    throw new ApiError(res.status, p);
  }
}

export async function closeSession() {
  await fetch("/api/v1/session", { method: "DELETE", credentials: "same-origin" }).catch(() => {});
}

export const enc = encodeURIComponent;
