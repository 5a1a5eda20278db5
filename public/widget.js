/* Dialog Engine chat widget. One tag, no dependencies:
   <script src="https://host/widget.js" data-assistant="asst_…" data-key="de_chat_…" [data-api="https://host"]
           [data-lang="de"] [data-open="true"] [data-user-id="…" data-user-hash="…"]></script>
   data-user-id / data-user-hash: a signed-in user, signed by your server (README: Security). Without them
   the engine issues an anonymous visitor token, which the widget keeps and sends back.
   Everything lives in a shadow root, so the page's CSS and ours never meet. */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || !script.dataset.assistant) return;
  const cfg = script.dataset;
  const API = (cfg.api || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  const ASSISTANT = cfg.assistant;
  // A verified user (the page's server signed the id) or an anonymous visitor with the engine's token.
  const USER = cfg.userId && cfg.userHash ? { id: cfg.userId, hash: cfg.userHash } : null;
  // One store per user: someone else signing in on this browser doesn't see the last user's chat.
  const STORE = `dialog-engine:${API}:${ASSISTANT}` + (USER ? `:user:${USER.id}` : "");
  const TOKEN_STORE = `dialog-engine:${API}:visitor:${(cfg.key || "").slice(0, 16)}`;
  const storage = (value) => {
    try { return value === undefined ? localStorage.getItem(TOKEN_STORE) : localStorage.setItem(TOKEN_STORE, value); } catch { return null; }
  };
  let visitorToken = USER ? null : storage();
  const keepToken = (token) => { if (token && !USER && token !== visitorToken) { visitorToken = token; storage(token); } };
  // English, baked in so the widget never shows a bare key; other languages come from /i18n/<lang>.json.
  const EN = {
    "widget.open": "Open chat", "widget.close": "Close chat", "widget.title": "Chat",
    "widget.new": "Start a new conversation", "widget.input_label": "Your message",
    "widget.placeholder": "Ask a question…", "widget.send": "Send", "widget.thinking": "Writing an answer…",
    "widget.you": "You", "widget.assistant": "Assistant", "widget.sources": "Sources ({n})",
    "widget.source_n": "Source {n}", "widget.new_tab": "opens in a new tab",
    "widget.suggestions": "Suggested questions", "widget.helpful": "Helpful", "widget.not_helpful": "Not helpful",
    "widget.thanks": "Thank you for your feedback.", "widget.feedback_failed": "Your feedback could not be sent.",
    "widget.unreachable": "The assistant cannot be reached right now. Please check your connection and try again.",
    "widget.rate_limited": "Too many messages. Please try again in {n} s.",
    "widget.not_allowed": "This chat is not available on this website.",
    "widget.unavailable": "The assistant cannot answer right now. Please try again in a moment.",
    "widget.too_long": "Your message is too long. Please shorten it.",
    "widget.interrupted": "The answer was interrupted.", "widget.failed": "Something went wrong. Please try again.",
  };
  let T = EN;
  const t = (k, vars) => (T[k] || EN[k] || "").replace(/\{(\w+)\}/g, (_, v) => (vars && v in vars ? vars[v] : ""));
  const LANGS = { german: "de", deutsch: "de", english: "en" };
  const langOf = (v) => { v = String(v || "").toLowerCase(); return LANGS[v] || v.split(/[-_]/)[0]; };

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    el.append(...kids.flat().filter((k) => k != null && k !== false));
    return el;
  }
  const svg = (d, label) => {
    const s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    s.setAttribute("viewBox", "0 0 24 24"); s.setAttribute("aria-hidden", "true");
    s.innerHTML = `<path d="${d}"/>`;  // constant path data only
    return label ? [s, h("span", { class: "sr" }, label)] : s;
  };
  const ICON = {
    chat: "M4 4h16v12H7l-3 3zM8 9h8M8 12h5", close: "M6 6l12 12M18 6L6 18", send: "M4 12l16-8-6 16-2-6z",
    reset: "M4 12a8 8 0 1 0 3-6.2M4 4v4h4", up: "M7 11v9H4v-9zM7 11l4-7c2 0 3 1 2.5 3L13 10h6l-2 10H7",
    down: "M7 13V4H4v9zM7 13l4 7c2 0 3-1 2.5-3L13 14h6l-2-10H7",
  };

  // ---- state: the conversation survives reloads (localStorage, per assistant) ----
  const load = () => { try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch { return {}; } };
  let state = Object.assign({ c: null, m: [] }, load());
  const KEEP = ["role", "text", "sources", "id", "rating", "error"];
  const save = () => {
    // Only finished messages: a reply cut short by a reload is fetched back from the server instead.
    const m = state.m.filter((x) => !x.pending).slice(-60)
      .map((x) => Object.fromEntries(KEEP.filter((k) => x[k] != null).map((k) => [k, x[k]])));
    try { localStorage.setItem(STORE, JSON.stringify({ c: state.c, m })); } catch { /* full or blocked */ }
  };
  const session = (value) => {
    try { return value === undefined ? sessionStorage.getItem(STORE + ":open") : sessionStorage.setItem(STORE + ":open", value); } catch { return null; }
  };
  let info = null, infoError = "widget.unreachable", busy = false, ui = null;

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${cfg.key}`, ...(options.body ? { "Content-Type": "application/json" } : {}),
      ...(USER ? { "X-User-Id": USER.id, "X-User-Hash": USER.hash } : visitorToken ? { "X-Visitor-Token": visitorToken } : {}) };
    const res = await fetch(API + path, { ...options, headers, credentials: "omit" });
    keepToken(res.headers.get("X-Visitor-Token"));
    return res;
  }

  async function init() {
    try {
      const res = await api(`/api/assistants/${encodeURIComponent(ASSISTANT)}/public`);
      if (res.ok) info = await res.json();
      else if (res.status < 500 && res.status !== 429) infoError = "widget.not_allowed";  // wrong key, site or id
    } catch { /* unreachable: the panel says so when opened */ }
    const pinned = info && info.language !== "auto" ? info.language : "";  // "auto": answers follow the user
    const lang = langOf(cfg.lang || pinned || navigator.language || "en");
    if (lang !== "en" && /^[a-z]{2,3}$/.test(lang)) {
      try { const res = await fetch(`${API}/i18n/${lang}.json`, { credentials: "omit" }); if (res.ok) T = await res.json(); } catch { /* English it is */ }
    }
    build(T === EN ? "en" : lang);
  }

  // ---- the DOM ----
  function build(lang) {
    const host = h("dialog-engine-widget", { "data-assistant": ASSISTANT });
    const root = host.attachShadow({ mode: "open" });
    const name = (info && info.name) || t("widget.title");
    ui = {
      host, root,
      launcher: h("button", { class: "launcher", type: "button", "aria-expanded": "false", "aria-controls": "panel",
        "aria-label": t("widget.open"), onclick: () => toggle(true) }, svg(ICON.chat)),
      log: h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": name, tabindex: "-1" }),
      status: h("p", { class: "status", role: "alert" }),
      input: h("textarea", { id: "input", rows: "1", placeholder: t("widget.placeholder"), maxlength: "8000" }),
      tip: h("div", { class: "tip", role: "tooltip", id: "tip", hidden: true }),
    };
    ui.send = h("button", { class: "send", type: "submit" }, svg(ICON.send, t("widget.send")));
    ui.panel = h("section", { class: "panel", id: "panel", role: "dialog", "aria-labelledby": "title", lang, hidden: true },
      h("header", {},
        h("h2", { id: "title" }, name),
        h("button", { type: "button", class: "icon", title: t("widget.new"), onclick: reset }, svg(ICON.reset, t("widget.new"))),
        h("button", { type: "button", class: "icon", title: t("widget.close"), onclick: () => toggle(false) },
          svg(ICON.close, t("widget.close")))),
      ui.log, ui.status, ui.tip,
      h("form", { onsubmit: (e) => { e.preventDefault(); send(ui.input.value); } },
        h("label", { for: "input", class: "sr" }, t("widget.input_label")), ui.input, ui.send));
    // The page's inherited styles reach the host element; .root resets them for everything inside.
    root.append(h("style", {}, CSS), h("div", { class: "root" }, ui.launcher, ui.panel));
    ui.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(ui.input.value); }
    });
    ui.panel.addEventListener("keydown", (e) => {
      if (e.key !== "Escape") return;
      e.stopPropagation();
      if (!ui.tip.hidden) hideTip(); else toggle(false);
    });
    document.body.append(host);
    renderAll();
    if (cfg.open === "true" || session() === "1") toggle(true, false);
    if (state.c && state.m.length && state.m[state.m.length - 1].role === "user") syncFromServer();
  }

  function toggle(open, focus = true) {
    ui.panel.hidden = !open;
    ui.launcher.hidden = open && matchMedia("(max-width: 480px)").matches;
    ui.launcher.setAttribute("aria-expanded", String(open));
    session(open ? "1" : "0");
    if (open) {
      if (!info) ui.status.textContent = t(infoError);
      ui.log.scrollTop = ui.log.scrollHeight;
      if (focus) ui.input.focus();
    } else {
      hideTip();
      ui.launcher.hidden = false;
      if (focus) ui.launcher.focus();
    }
  }

  function reset() {
    if (busy) return;
    state = { c: null, m: [] };
    save(); renderAll(); ui.status.textContent = ""; ui.input.focus();
  }

  function renderAll() {
    ui.log.replaceChildren();
    if (info && info.greeting) ui.log.append(h("div", { class: "msg assistant greeting" }, h("div", { class: "body" }, info.greeting)));
    state.m.forEach((m, i) => ui.log.append(renderMessage(m, i)));
    if (!state.m.length && info && info.suggested_questions && info.suggested_questions.length) {
      ui.log.append(h("div", { class: "chips", role: "group", "aria-label": t("widget.suggestions") },
        info.suggested_questions.map((q) => h("button", { type: "button", onclick: () => send(q) }, q))));
    }
  }

  function renderMessage(m, i) {
    const el = h("div", { class: `msg ${m.role}` }, h("span", { class: "sr" }, t(m.role === "user" ? "widget.you" : "widget.assistant") + ": "));
    const body = h("div", { class: "body" });
    el.append(body);
    m.el = el;
    if (m.role === "user") { body.textContent = m.text; return el; }
    fillAnswer(el, body, m, `s${i}`);
    return el;
  }

  function fillAnswer(el, body, m, prefix) {
    const sources = m.sources || [];
    if (!m.text && m.pending) body.append(h("span", { class: "dots", "aria-hidden": "true" }, "•••"), h("span", { class: "sr" }, t("widget.thinking")));
    else markdown(body, m.text || "", sources, prefix);
    if (m.error) el.append(h("p", { class: "err" }, t(m.error)));
    if (sources.length && !m.pending) {
      el.append(h("details", { class: "sources" }, h("summary", {}, t("widget.sources", { n: sources.length })),
        h("ol", {}, sources.map((s) => {
          const title = s.title || s.url || t("widget.source_n", { n: s.index });
          return h("li", { value: s.index, id: `${prefix}-${s.index}`, tabindex: "-1" },
            isWeb(s.url) ? h("a", { href: s.url, target: "_blank", rel: "noopener noreferrer" }, title, h("span", { class: "sr" }, ` (${t("widget.new_tab")})`)) : h("strong", {}, title),
            h("q", { id: `${prefix}-${s.index}-q` }, s.quote || ""));
        }))));
    }
    if (m.id && !m.pending) {
      const rate = (r) => h("button", { type: "button", class: "icon", "aria-pressed": String(m.rating === r),
        title: t(r === "up" ? "widget.helpful" : "widget.not_helpful"), onclick: () => feedback(m, r) },
        svg(ICON[r], t(r === "up" ? "widget.helpful" : "widget.not_helpful")));
      el.append(h("div", { class: "fb" }, rate("up"), rate("down"), h("span", { class: "note", "aria-live": "polite" }, m.note ? t(m.note) : "")));
    }
  }

  const isWeb = (url) => /^https?:\/\//i.test(url || "");

  // A small, safe subset of markdown: paragraphs, "> " quotes, "- " and "1. " lists, **bold**, `code`, [n] citations.
  function markdown(body, text, sources, prefix) {
    let block = null, kind = "";
    for (const line of text.split("\n")) {
      const m = line.match(/^(>\s?|[-*]\s+|\d+\.\s+)?(.*)$/);
      const mark = (m[1] || "").trim();
      const want = !line.trim() ? "" : mark === ">" ? "blockquote" : /^[-*]$/.test(mark) ? "ul" : mark ? "ol" : "p";
      if (!want) { block = null; kind = ""; continue; }
      if (want !== kind || want === "p" && !block) { block = h(want); body.append(block); kind = want; }
      const target = want === "ul" || want === "ol" ? block.appendChild(h("li")) : block;
      if (want !== "ul" && want !== "ol" && target.childNodes.length) target.append(want === "p" ? h("br") : " ");
      inline(target, m[2], sources, prefix);
    }
  }

  function inline(target, text, sources, prefix) {
    for (const part of text.split(/(\[\d{1,3}\]|\*\*[^*]+\*\*|`[^`]+`)/)) {
      const cite = part.match(/^\[(\d{1,3})\]$/);
      const source = cite && sources.find((s) => s.index === Number(cite[1]));
      if (source) target.append(citation(source, prefix));
      else if (/^\*\*.+\*\*$/.test(part)) target.append(h("strong", {}, part.slice(2, -2)));
      else if (/^`.+`$/.test(part)) target.append(h("code", {}, part.slice(1, -1)));
      else if (part) target.append(part);
    }
  }

  function citation(s, prefix) {
    const web = isWeb(s.url);
    const a = h("a", { class: "cite", href: web ? s.url : `#${prefix}-${s.index}`, "data-quote": s.quote || "",
      "aria-describedby": `${prefix}-${s.index}-q`, target: web ? "_blank" : null, rel: web ? "noopener noreferrer" : null,
      "aria-label": `${t("widget.source_n", { n: s.index })}: ${s.title || ""}${web ? ` (${t("widget.new_tab")})` : ""}` }, `[${s.index}]`);
    if (!web) a.addEventListener("click", (e) => {
      // No page to open: reveal the quoted passage below the answer (never touch the host page's URL).
      e.preventDefault();
      const item = ui.root.getElementById(`${prefix}-${s.index}`);
      if (item) { item.closest("details").open = true; item.classList.add("hit"); item.focus(); }
    });
    for (const ev of ["mouseenter", "focus"]) a.addEventListener(ev, () => showTip(a));
    for (const ev of ["mouseleave", "blur"]) a.addEventListener(ev, hideTip);
    return a;
  }

  function showTip(a) {
    if (!a.dataset.quote) return;
    ui.tip.textContent = a.dataset.quote;
    ui.tip.hidden = false;
    const p = ui.panel.getBoundingClientRect(), r = a.getBoundingClientRect();
    ui.tip.style.left = `${Math.max(8, Math.min(r.left - p.left - 20, p.width - ui.tip.offsetWidth - 8))}px`;
    const above = r.top - p.top - ui.tip.offsetHeight - 6;
    ui.tip.style.top = `${above > 8 ? above : r.bottom - p.top + 6}px`;
  }
  function hideTip() { if (ui) ui.tip.hidden = true; }

  function update(m) {
    // Re-render one assistant message in place (streaming deltas, errors, feedback).
    const i = state.m.indexOf(m), old = m.el;
    if (old && old.isConnected) { const fresh = renderMessage(m, i); old.replaceWith(fresh); fresh.setAttribute("aria-busy", String(!!m.pending)); }
  }

  // ---- a chat turn: POST /api/chat, read the SSE stream as it arrives ----
  async function send(text, retried) {
    text = (text || "").trim();
    if (!text || busy) return;
    busy = true; ui.send.disabled = true; ui.status.textContent = ""; ui.input.value = "";
    const chips = ui.log.querySelector(".chips"); if (chips) chips.remove();
    const user = { role: "user", text };
    const reply = { role: "assistant", text: "", sources: [], pending: true };
    state.m.push(user, reply);
    ui.log.append(renderMessage(user, state.m.length - 2), renderMessage(reply, state.m.length - 1));
    reply.el.setAttribute("aria-busy", "true");
    ui.log.scrollTop = ui.log.scrollHeight;
    let res;
    try {
      res = await api("/api/chat", { method: "POST", body: JSON.stringify({ assistant_id: ASSISTANT, message: text, ...(state.c ? { conversation_id: state.c } : {}) }) });
    } catch {
      return fail(user, reply, text, "widget.unreachable");
    }
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      const err = (body && body.error) || {};
      if (res.status === 404 && state.c && !retried && err.code === "conversation_not_found") {
        state.c = null; drop(user, reply); busy = false; return send(text, true);  // deleted on the server: start afresh
      }
      if (res.status === 429) {
        const wait = parseInt(res.headers.get("Retry-After"), 10) || (err.details && err.details.retry_after) || 30;
        return fail(user, reply, text, "widget.rate_limited", { n: wait });
      }
      return fail(user, reply, text, res.status === 401 || res.status === 403 ? "widget.not_allowed"
        : res.status === 413 || res.status === 422 ? "widget.too_long" : res.status >= 500 ? "widget.unavailable" : "widget.failed");
    }
    save();
    let frame = 0;
    const paint = () => { frame = 0; update(reply); ui.log.scrollTop = ui.log.scrollHeight; };
    try {
      await readEvents(res, (name, data) => {
        if (name === "conversation") { keepToken(data.visitor_token); state.c = data.conversation_id; save(); }
        else if (name === "delta") { reply.text += data.text; if (!frame) frame = requestAnimationFrame(paint); }
        else if (name === "error") reply.error = data.code === "providers_unavailable" ? "widget.unavailable" : data.code === "provider_interrupted" ? "widget.interrupted" : "widget.failed";
        else if (name === "sources") reply.sources = data || [];
        else if (name === "done") { reply.id = data.message_id; reply.status = data.status; }
      });
      if (!reply.id && !reply.error) reply.error = "widget.interrupted";
    } catch {
      reply.error = "widget.interrupted";
    }
    if (frame) cancelAnimationFrame(frame);
    reply.pending = false;
    if (!reply.text && !reply.id) reply.error = reply.error || "widget.failed";
    finish();
    update(reply); save();
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  async function readEvents(res, on) {
    const reader = res.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        let name = "message", data = "";
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
        }
        if (data) on(name, JSON.parse(data));
      }
      if (done) return;
    }
  }

  function drop(user, reply) {
    state.m = state.m.filter((m) => m !== user && m !== reply);
    user.el && user.el.remove(); reply.el && reply.el.remove();
  }

  function fail(user, reply, text, key, vars) {
    // Nothing was answered: take the message back into the box so it can be sent again.
    drop(user, reply); save();
    if (!state.m.length) renderAll();  // bring the suggested questions back
    ui.input.value = text;
    ui.status.textContent = t(key, vars);
    finish();
  }

  function finish() { busy = false; ui.send.disabled = false; }

  async function feedback(m, rating) {
    m.rating = rating; m.note = "";
    try {
      const res = await api("/api/feedback", { method: "POST", body: JSON.stringify({ message_id: m.id, rating }) });
      m.note = res.ok ? "widget.thanks" : "widget.feedback_failed";
      if (!res.ok) m.rating = null;
    } catch { m.note = "widget.feedback_failed"; m.rating = null; }
    save(); update(m);
    const pressed = m.el && m.el.querySelector(`.fb button:nth-child(${rating === "up" ? 1 : 2})`);
    if (pressed) pressed.focus();
  }

  async function syncFromServer() {
    // A reload cut an answer short: the server kept what was said.
    try {
      const res = await api(`/api/conversations/${encodeURIComponent(state.c)}`);
      if (!res.ok) return;
      const conv = await res.json();
      state.m = conv.messages.filter((m) => m.role === "user" || m.role === "assistant").map((m) => ({
        role: m.role, text: m.content, sources: m.citations || [], id: m.role === "assistant" ? m.id : undefined,
        error: m.status === "failed" ? "widget.failed" : m.status === "partial" ? "widget.interrupted" : undefined,
      }));
      save(); renderAll();
    } catch { /* keep what we have */ }
  }

  const CSS = `
:host,.root{all:initial}
*{box-sizing:border-box}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.launcher,.panel{position:fixed;z-index:2147483000;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330}
.launcher{right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;background:#2f6fed;color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);display:grid;place-items:center}
svg{width:22px;height:22px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}
button{font:inherit;color:inherit;cursor:pointer}
button:focus-visible,a:focus-visible,textarea:focus-visible,li:focus,summary:focus-visible,.log:focus-visible{outline:3px solid #f5a623;outline-offset:2px}
.panel{right:20px;bottom:88px;width:380px;height:min(600px,calc(100vh - 110px));background:#fff;border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}
.panel[hidden],[hidden]{display:none}
header{display:flex;align-items:center;gap:4px;padding:10px 10px 10px 16px;background:#2f6fed;color:#fff}
h2{flex:1;margin:0;font-size:16px;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.icon{background:none;border:0;border-radius:6px;padding:6px;display:grid;place-items:center}
header .icon:hover{background:rgba(255,255,255,.18)}
.log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;background:#f7f8fa}
.msg{max-width:88%;padding:9px 12px;border-radius:12px;background:#fff;border:1px solid #e4e7ec;overflow-wrap:anywhere;position:relative}
.msg.user{align-self:flex-end;background:#2f6fed;color:#fff;border-color:#2f6fed;white-space:pre-wrap}
.body p,.body blockquote,.body ul,.body ol{margin:0 0 6px}.body>:last-child{margin-bottom:0}
.body blockquote{border-left:3px solid #c8d3e6;padding-left:8px;color:#475467}
.body ul,.body ol{padding-left:20px}
code{font:13px ui-monospace,monospace;background:#eef1f5;padding:0 3px;border-radius:3px}
.cite{color:#1f5bd6;font-size:.8em;vertical-align:super;text-decoration:none;padding:0 1px}
.cite:hover{text-decoration:underline}
.dots{letter-spacing:2px;color:#98a2b3;animation:p 1s infinite alternate}@keyframes p{to{opacity:.3}}
@media (prefers-reduced-motion:reduce){.dots{animation:none}}
.err{margin:6px 0 0;color:#b42318;font-size:13px}
.sources{margin-top:6px;font-size:13px;color:#475467}
.sources summary{cursor:pointer}
.sources ol{margin:4px 0 0;padding-left:20px}
.sources li{margin:4px 0;border-radius:4px}.sources li.hit{background:#fff4d6}
.sources q{display:block;quotes:none;color:#667085}
.sources a{color:#1f5bd6}
.fb{display:flex;align-items:center;gap:2px;margin-top:4px;color:#667085}
.fb svg{width:16px;height:16px}.fb .icon:hover{background:#eef1f5}
.fb [aria-pressed=true]{color:#2f6fed;background:#e8f0fe}
.note{font-size:12px;margin-left:4px}
.chips{display:flex;flex-wrap:wrap;gap:6px}
.chips button{border:1px solid #c8d3e6;background:#fff;border-radius:16px;padding:5px 11px;font-size:14px;color:#1f5bd6;text-align:left}
.chips button:hover{background:#e8f0fe}
.status{margin:0;padding:0 14px;color:#b42318;font-size:13px;background:#f7f8fa}.status:not(:empty){padding:8px 14px}
form{display:flex;gap:8px;padding:10px;border-top:1px solid #e4e7ec;background:#fff}
textarea{flex:1;resize:none;border:1px solid #c8d3e6;border-radius:10px;padding:8px 10px;font:inherit;color:inherit;max-height:120px;min-height:40px}
.send{border:0;border-radius:10px;background:#2f6fed;color:#fff;width:44px;display:grid;place-items:center}
.send:disabled{opacity:.5;cursor:default}
.tip{position:absolute;z-index:2;max-width:280px;max-height:160px;overflow:hidden;padding:8px 10px;border-radius:8px;background:#1d2330;color:#fff;font-size:13px;line-height:1.4;box-shadow:0 4px 14px rgba(0,0,0,.3);pointer-events:none}
@media (max-width:480px){.panel{inset:0;width:auto;height:auto;border-radius:0}.launcher{right:14px;bottom:14px}}
`;

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
