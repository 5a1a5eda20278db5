// The chat page: pick an assistant, chat over POST /api/chat (SSE), show citations. No dependencies.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = { key: localStorage.getItem("de.key") || "", assistant: "", conversation: null, busy: false };

  function status(text) { $("status").textContent = text || ""; }

  // With a chat key the engine issues an anonymous visitor token; conversations belong to it, so send it back.
  let visitorToken = null;
  function headers() {
    return { "Authorization": `Bearer ${state.key}`, "Content-Type": "application/json",
      ...(visitorToken ? { "X-Visitor-Token": visitorToken } : {}) };
  }

  async function api(path, options = {}) {
    const reply = await fetch(path, { ...options, headers: headers() });
    const body = reply.status === 204 ? null : await reply.json().catch(() => null);
    if (!reply.ok) throw new Error(body?.error?.message || `HTTP ${reply.status}`);
    return body;
  }

  async function loadAssistants() {
    const select = $("assistant");
    select.length = 1;
    $("create").hidden = true;
    if (!state.key) return status("Enter an API key to start.");
    try {
      const list = await api("/api/assistants?limit=100");
      for (const a of list.data) select.add(new Option(a.name, a.id));
      $("create").hidden = list.data.length > 0;
      const saved = localStorage.getItem("de.assistant");
      if ([...select.options].some((o) => o.value === saved)) select.value = saved;
      else if (list.data.length) select.value = list.data[0].id;
      await choose(select.value);
      status(list.data.length ? "" : "No assistants yet: create one.");
    } catch (err) {
      // Chat keys may not list assistants: type the id instead.
      status(`${err.message} — type an assistant id instead.`);
    }
  }

  async function createAssistant() {
    try {
      const created = await api("/api/assistants", { method: "POST", body: JSON.stringify({ name: "My assistant" }) });
      localStorage.setItem("de.assistant", created.id);
      await loadAssistants();
    } catch (err) { status(err.message); }
  }

  async function choose(id) {
    state.assistant = id || "";
    state.conversation = null;
    $("log").replaceChildren();
    if (!id) return;
    localStorage.setItem("de.assistant", id);
    try {
      const info = await api(`/api/assistants/${encodeURIComponent(id)}/public`);
      if (info.greeting) addMessage("assistant").body.textContent = info.greeting;
      if (info.suggested_questions.length) {
        const box = document.createElement("div");
        box.className = "suggestions";
        for (const q of info.suggested_questions) {
          const b = document.createElement("button");
          b.type = "button"; b.className = "secondary"; b.textContent = q;
          b.onclick = () => { box.remove(); send(q); };
          box.append(b);
        }
        $("log").append(box);
      }
    } catch (err) { status(err.message); }
  }

  function addMessage(role) {
    const div = document.createElement("div");
    div.className = `msg ${role}`;
    const body = document.createElement("div");
    div.append(body);
    $("log").append(div);
    return { div, body };
  }

  // Answer text with [n] markers turned into links to its numbered sources.
  function renderAnswer(el, text, sources, prefix) {
    el.replaceChildren();
    const known = new Set(sources.map((s) => s.index));
    for (const piece of text.split(/(\[\d{1,3}\])/)) {
      const m = piece.match(/^\[(\d{1,3})\]$/);
      if (m && known.has(Number(m[1]))) {
        const sup = document.createElement("sup");
        const a = document.createElement("a");
        a.href = `#${prefix}-${m[1]}`; a.textContent = `[${m[1]}]`;
        sup.append(a); el.append(sup);
      } else {
        el.append(document.createTextNode(piece));
      }
    }
  }

  function renderSources(div, sources, prefix) {
    if (!sources.length) return;
    const list = document.createElement("ol");
    list.className = "sources";
    for (const s of sources) {
      const li = document.createElement("li");
      li.value = s.index; li.id = `${prefix}-${s.index}`;
      const title = s.title || s.url || `Source ${s.index}`;
      if (s.url && /^https?:\/\//i.test(s.url)) {
        const a = document.createElement("a");
        a.href = s.url; a.textContent = title; a.target = "_blank"; a.rel = "noopener noreferrer";
        li.append(a);
      } else {
        li.append(document.createTextNode(title));
      }
      const q = document.createElement("q");
      q.textContent = s.quote;
      li.append(q);
      list.append(li);
    }
    div.append(list);
  }

  async function send(text) {
    if (state.busy || !text.trim()) return;
    if (!state.key) return status("Enter an API key first.");
    if (!state.assistant) return status("Choose an assistant first.");
    state.busy = true; $("send").disabled = true; status("");
    addMessage("user").body.textContent = text;
    const reply = addMessage("assistant");
    const prefix = `src-${Date.now()}`;
    let answer = "", sources = [];
    try {
      const body = { assistant_id: state.assistant, message: text };
      if (state.conversation) body.conversation_id = state.conversation;
      const res = await fetch("/api/chat", { method: "POST", headers: headers(), body: JSON.stringify(body) });
      visitorToken = res.headers.get("X-Visitor-Token") || visitorToken;
      if (!res.ok) {
        const err = await res.json().catch(() => null);
        throw new Error(err?.error?.message || `HTTP ${res.status}`);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          const name = (block.match(/^event: (.*)$/m) || [])[1];
          const data = (block.match(/^data: (.*)$/m) || [])[1];
          if (!name || data === undefined) continue;
          const payload = JSON.parse(data);
          if (name === "conversation") state.conversation = payload.conversation_id;
          else if (name === "delta") { answer += payload.text; reply.body.textContent = answer; }
          else if (name === "error") { reply.div.classList.add("error"); status(payload.message); }
          else if (name === "sources") sources = payload;
          else if (name === "done") {
            const meta = document.createElement("div");
            meta.className = "meta";
            const t = payload.timings || {};
            meta.textContent = [payload.provider, payload.model, payload.status,
              t.ttft_ms != null ? `first token ${Math.round(t.ttft_ms)} ms` : null].filter(Boolean).join(" · ");
            reply.div.append(meta);
          }
          $("log").scrollTop = $("log").scrollHeight;
        }
      }
      renderAnswer(reply.body, answer, sources, prefix);
      renderSources(reply.div, sources, prefix);
    } catch (err) {
      reply.div.classList.add("error");
      reply.body.textContent = err.message;
    } finally {
      state.busy = false; $("send").disabled = false;
      $("log").scrollTop = $("log").scrollHeight;
    }
  }

  $("key").value = state.key;
  $("save-key").onclick = () => {
    state.key = $("key").value.trim(); visitorToken = null;
    localStorage.setItem("de.key", state.key);
    loadAssistants();
  };
  $("assistant").onchange = (e) => choose(e.target.value);
  $("assistant-id").onchange = (e) => choose(e.target.value.trim());
  $("create").onclick = createAssistant;
  $("new-chat").onclick = () => choose(state.assistant);
  $("form").onsubmit = (e) => { e.preventDefault(); const t = $("message").value; $("message").value = ""; send(t); };
  $("message").onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
  };
  loadAssistants();
})();
