// Conversations: list, search (titles at once, message text by reading the listed conversations), read, export.
import { api, assistantPicker, fill, download, errorText, fmtDate, fmtNum, field, h, notify, t, table, empty } from "./core.js";

let listed = [], cursor = null, details = new Map(), search, since, picker, listBox, detailBox, searchToken = 0;

export async function render(main, params) {
  listed = []; cursor = null; details = new Map();
  const { select } = await assistantPicker(() => reload(), { allowAll: true, selected: params.get("assistant") || "" });
  picker = select;
  search = h("input", { type: "search", id: "conv-search", placeholder: t("conversations.search_placeholder") });
  since = h("input", { type: "date", id: "conv-since" });
  let debounce;
  search.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(filter, 250); });
  since.addEventListener("change", () => reload());
  listBox = h("div", { "aria-live": "polite" });
  detailBox = h("div", { id: "conversation" });
  main.append(h("div", { class: "toolbar" }, field(t("sources.assistant"), select), field(t("conversations.since"), since),
    field(t("conversations.search"), search, t("conversations.search_hint"))), h("div", { class: "split" }, listBox, detailBox));
  await reload();
  if (params.get("open")) await open(params.get("open"));
}

async function reload() {
  listed = []; cursor = null;
  await more();
}

async function more() {
  const query = new URLSearchParams({ limit: "50" });
  if (picker.value) query.set("assistant_id", picker.value);
  if (since.value) query.set("since", since.value);
  if (cursor) query.set("cursor", cursor);
  const page = await api(`/api/conversations?${query}`);
  listed = listed.concat(page.data);
  cursor = page.next_cursor;
  await filter();
}

async function filter() {
  const token = ++searchToken;
  const needle = search.value.trim().toLowerCase();
  let shown = listed, snippets = new Map();
  if (needle) {
    // Titles and ids match at once; message text needs each conversation read (cached after the first time).
    await readAll(listed.filter((c) => !details.has(c.id)));
    if (token !== searchToken) return;
    shown = listed.filter((c) => {
      if ([c.title, c.id, c.user_id].some((v) => (v || "").toLowerCase().includes(needle))) return true;
      const hit = (details.get(c.id)?.messages || []).find((m) => m.content.toLowerCase().includes(needle));
      if (hit) snippets.set(c.id, snippet(hit.content, needle));
      return Boolean(hit);
    });
  }
  const rows = shown.map((c) => h("tr", { "data-conversation": c.id },
    h("td", {}, h("button", { type: "button", class: "link", onclick: () => open(c.id) }, c.title || t("conversations.untitled")),
      snippets.has(c.id) ? h("small", { class: "muted snippet" }, snippets.get(c.id)) : null),
    h("td", {}, fmtNum(c.message_count)), h("td", { class: "mono" }, c.user_id || "—"), h("td", {}, fmtDate(c.updated_at))));
  fill(listBox,
    needle ? h("p", { class: "muted" }, t("conversations.matches", { n: shown.length, total: listed.length })) : null,
    table([t("conversations.title"), t("conversations.messages"), t("conversations.user"), t("conversations.active")],
      rows.length ? rows : empty(t(needle ? "conversations.no_match" : "conversations.none"), 4), t("nav.conversations")),
    cursor ? h("button", { type: "button", class: "secondary", onclick: () => more() }, t("common.more")) : null);
}

function snippet(text, needle) {
  const at = text.toLowerCase().indexOf(needle);
  return `${at > 40 ? "…" : ""}${text.slice(Math.max(0, at - 40), at + needle.length + 60)}${at + needle.length + 60 < text.length ? "…" : ""}`;
}

async function readAll(items) {
  const queue = [...items];
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      try { details.set(c.id, await api(`/api/conversations/${encodeURIComponent(c.id)}`)); } catch { /* skip it */ }
    }
  };
  await Promise.all([1, 2, 3, 4].map(worker));
}

async function open(id) {
  let conv;
  try { conv = await api(`/api/conversations/${encodeURIComponent(id)}`); }
  catch (err) { detailBox.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(err))); return; }
  details.set(id, conv);
  const exportAs = async (format) => {
    try {
      const res = await api(`/api/conversations/${encodeURIComponent(id)}/export?format=${format}`, { raw: true });
      download(`${id}.${format === "markdown" ? "md" : "json"}`, await res.blob());
    } catch (err) { notify(errorText(err), "error"); }
  };
  const heading = h("h3", { tabindex: "-1" }, conv.title || t("conversations.untitled"));
  detailBox.replaceChildren(h("section", { class: "card conversation", "aria-labelledby": "conv-title" },
    Object.assign(heading, { id: "conv-title" }),
    h("p", { class: "muted" }, t("conversations.meta", { id: conv.id, assistant: conv.assistant_id, created: fmtDate(conv.created_at) })),
    conv.summary ? h("p", { class: "summary" }, h("strong", {}, t("conversations.summary")), " ", conv.summary) : null,
    h("div", { class: "buttons" },
      h("button", { type: "button", class: "secondary", onclick: () => exportAs("json") }, t("conversations.export_json")),
      h("button", { type: "button", class: "secondary", onclick: () => exportAs("markdown") }, t("conversations.export_md")),
      h("button", { type: "button", class: "danger", onclick: () => remove(conv) }, t("common.delete"))),
    h("ol", { class: "messages" }, conv.messages.map((m) => h("li", { class: `message ${m.role}` },
      h("div", { class: "who" }, t(`conversations.role_${m.role}`) || m.role, " · ", fmtDate(m.created_at),
        m.status !== "complete" ? h("span", { class: "badge status-failed" }, t(`conversations.status_${m.status}`)) : null,
        m.model ? h("span", { class: "muted" }, ` · ${m.provider || ""} ${m.model}`) : null),
      h("div", { class: "content" }, m.content),
      m.citations?.length ? h("ol", { class: "citations" }, m.citations.map((c) => h("li", { value: String(c.index) },
        c.url ? h("a", { href: c.url, target: "_blank", rel: "noopener noreferrer" }, c.title || c.url) : h("strong", {}, c.title || t("conversations.source")),
        h("q", {}, c.quote)))) : null)))));
  heading.focus();
}

async function remove(conv) {
  if (!confirm(t("conversations.confirm_delete"))) return;
  try {
    await api(`/api/conversations/${encodeURIComponent(conv.id)}`, { method: "DELETE" });
    notify(t("common.deleted"));
    detailBox.replaceChildren();
    await reload();
  } catch (err) { notify(errorText(err), "error"); }
}
