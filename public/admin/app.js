// The admin console: sign in with an admin key, then one view per section (hash routes, no framework).
import { ApiError, KEY_STORE, LANG_STORE, api, errorText, h, loadLanguage, notify, state, t } from "./core.js";
import * as templates from "./templates.js";
import * as assistants from "./assistants.js";
import * as sources from "./sources.js";
import * as conversations from "./conversations.js";
import * as feedback from "./feedback.js";
import * as keys from "./keys.js";
import * as metrics from "./metrics.js";
import * as evals from "./evals.js";

const VIEWS = { assistants, templates, sources, conversations, feedback, keys, metrics, evals };
let cleanup = null, shown = 0;

function route() {
  const [name, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  return { name: VIEWS[name] ? name : "assistants", params: new URLSearchParams(query) };
}

async function show() {
  if (cleanup) { cleanup(); cleanup = null; }
  notify("");
  const main = document.getElementById("main");
  if (!state.key) return signIn(main);
  const { name, params } = route();
  document.querySelectorAll("nav a").forEach((a) => a.setAttribute("aria-current", a.dataset.view === name ? "page" : "false"));
  document.title = `${t(`nav.${name}`)} · ${t("app.title")}`;
  // A fresh box per visit: a view still loading when the user moves on renders into a detached box.
  const box = h("div");
  main.replaceChildren(h("h2", { tabindex: "-1", id: "view-title" }, t(`nav.${name}`)), box);
  const ticket = ++shown;
  try {
    const stop = (await VIEWS[name].render(box, params)) || null;
    // Navigated away while this view was loading: stop its polling instead of leaking it.
    if (ticket === shown) cleanup = stop; else if (stop) stop();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut(t("signin.expired"));
    box.append(h("p", { class: "error", role: "alert" }, errorText(err)));
  }
}

function chrome() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(...Object.keys(VIEWS).map((v) =>
    h("a", { href: `#/${v}`, "data-view": v }, t(`nav.${v}`))));
  nav.hidden = !state.key;
  document.getElementById("app-title").textContent = t("app.title");
  document.getElementById("skip").textContent = t("app.skip");
  const out = document.getElementById("sign-out");
  out.textContent = t("signin.sign_out");
  out.hidden = !state.key;
  const lang = document.getElementById("lang");
  lang.replaceChildren(...Object.entries(state.languages).map(([code, cat]) =>
    h("option", { value: code }, cat["language.name"] || code)));
  lang.value = state.lang;
  document.getElementById("lang-label").textContent = t("app.language");
}

function signIn(main, message = "") {
  chrome();
  const input = h("input", { id: "admin-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const error = h("p", { class: "error", role: "alert", id: "signin-error" }, message);
  const button = h("button", { type: "submit" }, t("signin.submit"));
  const form = h("form", { class: "card signin", onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true; error.textContent = "";
    const key = input.value.trim();
    try {
      await api("/api/keys", { key });
      state.key = key;
      sessionStorage.setItem(KEY_STORE, key);
      chrome();
      if (!location.hash || location.hash === "#/") location.hash = "#/assistants"; else show();
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? t("signin.invalid")
        : err instanceof ApiError && err.status === 403 ? t("signin.not_admin") : err.status === 0 ? t("error.unreachable") : t("error.generic");
      input.focus();
    } finally { button.disabled = false; }
  } },
  h("h2", {}, t("signin.title")), h("p", {}, t("signin.intro")),
  h("label", { for: "admin-key" }, t("signin.key")), input,
  h("small", { class: "hint" }, t("signin.kept")), error, button);
  main.replaceChildren(form);
  input.focus();
}

function signOut(message) {
  state.key = "";
  sessionStorage.removeItem(KEY_STORE);
  sessionStorage.removeItem("de.admin.chat");
  document.querySelectorAll("dialog-engine-widget").forEach((el) => el.remove());
  signIn(document.getElementById("main"), message || "");
}

async function start() {
  await loadLanguage();
  chrome();
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  document.getElementById("lang").addEventListener("change", async (e) => {
    localStorage.setItem(LANG_STORE, e.target.value);
    await loadLanguage(e.target.value);
    chrome(); show();
  });
  window.addEventListener("hashchange", () => { show().then(() => document.getElementById("view-title")?.focus()); });
  show();
}

start();
