// The console's shell: sign-in, the namespace picker, the connection's state and the
// page for the location's hash (#/ns/<namespace>[/app/<app>[/run/<name>|/pod/<pod>]]).

import { h, replace, notice } from "./dom.js";
import { call, setToken, signedIn, currentToken, openSession, closeSession, ApiError, enc } from "./api.js";
import { Mux } from "./mux.js";
import { appsPage } from "./apps.js";
import { appPage } from "./app.js";

const root = document.getElementById("app");
let mux = null;
let namespaces = [];
let page = null; // the open page's {close()}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const r = {};
  for (let i = 0; i + 1 < parts.length; i += 2) r[parts[i]] = parts[i + 1];
  return r;
}

export function go(r) {
  let hash = "#/ns/" + enc(r.ns);
  if (r.app) hash += "/app/" + enc(r.app);
  if (r.run) hash += "/run/" + enc(r.run);
  if (r.uid) hash += "/uid/" + enc(r.uid);
  if (r.pod) hash += "/pod/" + enc(r.pod);
  location.hash = hash;
}

function signInPage(message) {
  mux?.close();
  mux = null;
  const token = h("textarea", { id: "token", rows: 4, required: true, autocomplete: "off", spellcheck: "false", "aria-describedby": "token-help" });
  const status = h("div", { id: "signin-status" }, message ? notice("error", message) : null);
  const form = h("form", { id: "signin", class: "card", onsubmit: async (e) => {
    e.preventDefault();
    const t = token.value.trim();
    if (!t) return;
    replace(status, notice("info", "Signing in…"));
    setToken(t);
    try {
      await call("GET", "/api/v1/namespaces?limit=1");
      await openSession(t);
      start();
    } catch (err) {
      setToken("");
      replace(status, notice("error", err.status === 401 ? "The token was not accepted." : `Sign-in failed: ${err.message}`));
    }
  } },
  h("h1", {}, "dwp-sre console"),
  h("label", { for: "token" }, "Kubernetes bearer token"),
  token,
  h("p", { id: "token-help", class: "help" }, "The token stays in this tab. `make run` prints one for the demo user alice."),
  h("button", { type: "submit" }, "Sign in"),
  status);
  replace(root, h("main", { class: "signin" }, form));
  token.focus();
}

function shell() {
  const picker = h("select", { id: "namespace", "aria-label": "Namespace", onchange: () => go({ ns: picker.value }) },
    namespaces.map((n) => h("option", { value: n.name }, n.name)));
  const conn = h("span", { id: "connection", class: "conn", role: "status" }, "Connecting…");
  const header = h("header", { class: "top" },
    h("a", { href: "#/", class: "brand" }, "dwp-sre"),
    h("label", { for: "namespace", class: "sr" }, "Namespace"), picker,
    h("nav", { id: "crumbs", "aria-label": "Breadcrumbs" }),
    conn,
    h("button", { type: "button", id: "signout", onclick: async () => { await closeSession(); setToken(""); signInPage(); } }, "Sign out"));
  const main = h("main", { id: "page" });
  replace(root, header, main);
  let resumedTimer = 0;
  mux = new Mux((state, detail) => {
    clearTimeout(resumedTimer);
    const text = {
      connecting: "◐ Connecting…", live: "● Live", reconnecting: "◐ Reconnecting…",
      resumed: `✔ Reconnected, resumed${detail ? ": " + detail : ""}`, closed: `✖ Disconnected${detail ? ": " + detail : ""}`,
    }[state];
    conn.textContent = text;
    conn.dataset.state = state;
    if (state === "resumed") resumedTimer = setTimeout(() => { conn.textContent = "● Live (resumed)"; }, 8000);
  });
  return { picker, main };
}

async function start() {
  try {
    await openSession(currentToken()); // the cookie may have expired while the tab kept the token
    namespaces = [];
    let cont = "";
    do {
      const l = await call("GET", "/api/v1/namespaces?limit=200" + (cont ? "&continue=" + enc(cont) : ""));
      namespaces.push(...l.items);
      cont = l.continue || "";
    } while (cont);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { setToken(""); signInPage("Your token is no longer accepted: sign in again."); return; }
    replace(root, notice("error", `The namespaces could not be read: ${err.message}`));
    return;
  }
  const { picker, main } = shell();
  const render = () => {
    page?.close();
    mux.unsubscribeAll();
    const r = parseHash();
    if (!r.ns) {
      if (namespaces.length === 0) { replace(main, notice("info", "You may not see any namespace yet.")); return; }
      go({ ns: namespaces[0].name });
      return;
    }
    if (![...picker.options].some((o) => o.value === r.ns)) picker.append(h("option", { value: r.ns }, r.ns));
    picker.value = r.ns;
    const crumbs = document.getElementById("crumbs");
    replace(crumbs, h("a", { href: "#/ns/" + enc(r.ns) }, "Apps"), r.app ? [" / ", h("a", { href: "#/ns/" + enc(r.ns) + "/app/" + enc(r.app) }, r.app)] : null);
    page = r.app ? appPage(main, mux, r, go) : appsPage(main, mux, r, go);
  };
  window.onhashchange = render;
  render();
}

if (signedIn()) start(); else signInPage();
