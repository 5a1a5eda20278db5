// The console's small core: messages (i18n), the API client with the admin key, DOM and format helpers.

export const KEY_STORE = "de.admin.key";
export const LANG_STORE = "de.admin.lang";
export const state = { key: sessionStorage.getItem(KEY_STORE) || "", lang: "en", languages: {} };
let T = {}, EN = {};

const base = (code) => String(code || "").toLowerCase().split(/[-_]/)[0];

async function catalogue(code) {
  try {
    const res = await fetch(`/i18n/${code}.json`);
    return res.ok ? await res.json() : null;
  } catch { return null; }
}

/** Load English (the fallback) and the chosen language: the saved choice, else the browser's first known one. */
export async function loadLanguage(wanted) {
  const candidates = [...new Set(["en", "de", ...(navigator.languages || [navigator.language]).map(base)])]
    .filter((c) => /^[a-z]{2,3}$/.test(c));
  const loaded = await Promise.all(candidates.map(catalogue));
  state.languages = {};
  candidates.forEach((c, i) => { if (loaded[i]) state.languages[c] = loaded[i]; });
  EN = state.languages.en || {};
  const order = [wanted, localStorage.getItem(LANG_STORE), ...(navigator.languages || [navigator.language]), "en"].map(base);
  state.lang = order.find((c) => state.languages[c]) || "en";
  T = state.languages[state.lang] || EN;
  document.documentElement.lang = state.lang;
}

/** The message `key` in the console's language, with {name} placeholders filled in. */
export function t(key, vars) {
  const text = T[key] ?? EN[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, v) => (vars && v in vars ? String(vars[v]) : ""));
}

export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value" && "value" in el) el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...kids.flat(Infinity).filter((k) => k != null && k !== false));
  return el;
}

/** el.replaceChildren(...) that skips null/false (replaceChildren would print them as text). */
export function fill(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
  return el;
}

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status; this.code = error?.code || ""; this.details = error?.details;
  }
}

/** Call the API with the admin key. `body` is sent as JSON, a FormData as multipart; `raw` returns the Response. */
export async function api(path, { method = "GET", body, raw = false, key = state.key } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  const isForm = body instanceof FormData;
  if (body !== undefined && !isForm) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : isForm ? body : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { code: "unreachable", message: t("error.unreachable") });
  }
  if (!res.ok) {
    const payload = await res.json().catch(() => null);
    throw new ApiError(res.status, payload?.error);
  }
  if (raw) return res;
  return res.status === 204 ? null : res.json();
}

/** A readable, localised line for a failed call (the server's own message adds the detail). */
export function errorText(err) {
  if (!(err instanceof ApiError)) return t("error.generic");
  if (err.status === 0) return t("error.unreachable");
  if (err.status === 429) return t("error.rate_limited");
  const lead = t(`error.http_${err.status}`, {}) !== `error.http_${err.status}` ? t(`error.http_${err.status}`) : t("error.generic");
  const fields = Array.isArray(err.details) ? err.details.filter((d) => d.field).map((d) => `${d.field}: ${d.problem}`) : [];
  return [lead, err.message, ...fields].filter(Boolean).join(" — ");
}

export function fmtDate(value) {
  if (!value) return "—";
  return new Intl.DateTimeFormat(state.lang, { dateStyle: "medium", timeStyle: "short" }).format(new Date(value));
}

export function fmtNum(value, digits = 0) {
  return new Intl.NumberFormat(state.lang, { maximumFractionDigits: digits }).format(value);
}

/** A short message in the live region at the top of the page. */
export function notify(text, kind = "ok") {
  const box = document.getElementById("notice");
  box.className = `notice ${kind}`;
  box.textContent = text;
  box.hidden = !text;
}

export function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** JSON with sorted keys, so two versions of a config diff line by line. */
export function stableJson(value) {
  const sort = (v) => Array.isArray(v) ? v.map(sort)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])])) : v;
  return JSON.stringify(sort(value), null, 2);
}

export function lines(text) {
  return String(text || "").split("\n").map((s) => s.trim()).filter(Boolean);
}

/** A labelled form field; `control` is an input, select or textarea element. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintEl = hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl);
}

export function table(headers, rows, caption) {
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", { class: "sr" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows)));
}

export function empty(text, colspan) {
  return h("tr", { class: "empty-row" }, h("td", { colspan: String(colspan), class: "muted" }, text));
}

export async function assistantsList() {
  const list = await api("/api/assistants?limit=100");
  return list.data;
}

/** A <select> of the workspace's assistants; remembers the last choice in the session. */
export async function assistantPicker(onchange, { allowAll = false, selected } = {}) {
  const assistants = await assistantsList();
  const saved = selected ?? sessionStorage.getItem("de.admin.assistant") ?? "";
  const select = h("select", { id: "assistant-pick" },
    allowAll ? h("option", { value: "" }, t("common.all_assistants")) : null,
    assistants.map((a) => h("option", { value: a.id }, a.name)));
  if ([...select.options].some((o) => o.value === saved)) select.value = saved;
  select.addEventListener("change", () => { sessionStorage.setItem("de.admin.assistant", select.value); onchange(select.value); });
  return { select, assistants };
}
