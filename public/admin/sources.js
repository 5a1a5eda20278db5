// Sources: add any kind the API lists (GET /api/sources/kinds: a URL, a site, a sitemap, a feed, text, a file); live progress (polled every 2 s); pages and errors.
import { api, assistantPicker, fill, errorText, fmtDate, fmtNum, field, h, notify, t, table, empty } from "./core.js";

const POLL_MS = 2000;
const DONE = new Set(["ready", "failed"]);
let assistantId = "", rows = new Map(), body, openPages = null, timer = null, form, kinds = [];

// A kind's name in the console's language; a kind the catalogues do not know yet shows the API's summary.
const kindLabel = (name) => {
  const key = `sources.kind_${name}`, text = t(key);
  return text !== key ? text : kinds.find((k) => k.name === name)?.summary || name;
};

export async function render(main, params) {
  rows = new Map(); openPages = null;
  const { select, assistants } = await assistantPicker((id) => { assistantId = id; refresh(true); },
    { selected: params.get("assistant") || undefined });
  if (!assistants.length) {
    main.append(h("p", {}, t("sources.no_assistants"), " ", h("a", { href: "#/assistants" }, t("assistants.new"))));
    return null;
  }
  assistantId = select.value;
  kinds = (await api("/api/sources/kinds")).data;
  body = h("tbody");
  form = addForm();
  main.append(h("div", { class: "toolbar" }, field(t("sources.assistant"), select)), form,
    h("div", { class: "table-wrap" }, h("table", { id: "sources" },
      h("caption", { class: "sr" }, t("nav.sources")),
      h("thead", {}, h("tr", {}, [t("sources.source"), t("sources.kind"), t("sources.status"), t("sources.progress"),
        t("sources.chunks"), t("sources.synced"), ""].map((x) => h("th", { scope: "col" }, x)))), body)));
  await refresh(true);
  // Live progress: one poll every 2 s while the view is open (skipped while the tab is hidden).
  timer = setInterval(() => { if (!document.hidden) refresh(false).catch(() => {}); }, POLL_MS);
  return () => clearInterval(timer);
}

function addForm() {
  const kind = h("select", { id: "source-kind" }, kinds.map((k) => h("option", { value: k.name }, kindLabel(k.name))));
  const url = h("input", { id: "source-url", type: "url", placeholder: "https://example.com/", maxlength: "2048" });
  const title = h("input", { id: "source-title", maxlength: "300" });
  const content = h("textarea", { id: "source-content", rows: "6" });
  const file = h("input", { id: "source-file", type: "file", accept: ".pdf,.docx,.txt,.md,.markdown,.html,.htm,.csv,.json" });
  const limit = h("input", { id: "source-limit", type: "number", min: "1", max: "10000", value: "50" });
  const depth = h("input", { id: "source-depth", type: "number", min: "0", max: "20", value: "3" });
  const error = h("p", { class: "error", role: "alert" });
  const parts = { url: field(t("sources.url"), url), title: field(t("sources.title"), title),
    content: field(t("sources.content"), content), file: field(t("sources.file"), file),
    limit: field(t("sources.limit"), limit, t("sources.limit_hint")), depth: field(t("sources.depth"), depth) };
  const byInput = { url: ["url", "title"], content: ["title", "content"], file: ["file", "title"] };
  const chosen = () => kinds.find((k) => k.name === kind.value);
  const shown = (k) => [...byInput[k.input], ...k.settings.map((x) => (x === "max_depth" ? "depth" : x))];
  const sync = () => Object.entries(parts).forEach(([k, el]) => { el.hidden = !shown(chosen()).includes(k); });
  kind.addEventListener("change", sync);
  const button = h("button", { type: "submit" }, t("sources.add"));
  const el = h("form", { class: "card", id: "add-source", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = ""; button.disabled = true;
    try {
      let payload;
      const k = chosen();
      if (k.input === "file") {
        if (!file.files.length) throw new Error(t("sources.choose_file"));
        payload = new FormData();
        payload.append("assistant_id", assistantId);
        payload.append("file", file.files[0]);
        if (title.value.trim()) payload.append("title", title.value.trim());
      } else {
        payload = { assistant_id: assistantId, kind: kind.value };
        if (title.value.trim()) payload.title = title.value.trim();
        if (k.input === "content") payload.content = content.value;
        else payload.url = url.value.trim();
        if (k.settings.includes("limit")) payload.limit = Number(limit.value) || 50;
        if (k.settings.includes("max_depth")) payload.max_depth = Number(depth.value) || 0;
      }
      const created = await api("/api/sources", { method: "POST", body: payload });
      notify(t("sources.added", { name: created.title || created.url || created.id }));
      el.reset(); sync();
      await refresh(false);
    } catch (err) {
      error.textContent = err.status === undefined ? err.message : errorText(err);
    } finally { button.disabled = false; }
  } },
  h("h3", {}, t("sources.add_title")), field(t("sources.kind"), kind), Object.values(parts), error, button);
  sync();
  return el;
}

async function refresh(full) {
  if (!assistantId) return;
  const { data } = await api(`/api/sources?assistant_id=${encodeURIComponent(assistantId)}&limit=100`);
  if (full) { rows = new Map(); body.replaceChildren(); }
  const seen = new Set(data.map((s) => s.id));
  for (const [id, row] of rows) if (!seen.has(id)) { row.tr.remove(); row.pages?.remove(); rows.delete(id); }
  let previous = null;
  for (const source of data) {
    let row = rows.get(source.id);
    if (!row) {
      row = makeRow(source);
      rows.set(source.id, row);
      if (previous) previous.after(row.tr); else body.prepend(row.tr);
    }
    updateRow(row, source);
    previous = row.pages && row.pages.isConnected ? row.pages : row.tr;
  }
  if (!data.length) body.replaceChildren(empty(t("sources.none"), 7));
  else body.querySelector("tr.empty-row")?.remove();
  if (openPages && rows.has(openPages)) await loadPages(rows.get(openPages), false);
}

function makeRow(source) {
  const cells = { name: h("td"), kind: h("td"), status: h("td"), progress: h("td"), chunks: h("td"), synced: h("td") };
  const pagesButton = h("button", { type: "button", class: "secondary", "aria-expanded": "false" }, t("sources.pages"));
  const row = { tr: null, cells, pagesButton, pages: null, id: source.id };
  pagesButton.addEventListener("click", () => togglePages(row));
  row.tr = h("tr", { "data-source": source.id }, Object.values(cells), h("td", { class: "actions" }, pagesButton,
    h("button", { type: "button", class: "secondary", onclick: () => resync(source) }, t("sources.resync")),
    h("button", { type: "button", class: "danger", onclick: () => remove(source) }, t("common.delete"))));
  return row;
}

function updateRow(row, s) {
  const c = row.cells;
  const name = s.title || s.url || s.config?.file_name || s.id;
  fill(c.name, h("div", {}, name), s.url && s.title ? h("small", { class: "muted mono" }, s.url) : null);
  c.kind.textContent = kindLabel(s.kind);
  fill(c.status, h("span", { class: `badge status-${s.status}`, "data-status": s.status }, t(`sources.status_${s.status}`)),
    s.error ? h("small", { class: "error" }, s.error) : null,
    s.embeddings === "keyword_only" && s.status === "ready" ? h("small", { class: "muted" }, t("sources.keyword_only")) : null);
  const total = Math.max(s.pages_found, s.pages_done + s.pages_failed);
  const done = s.pages_done + s.pages_failed;
  c.progress.replaceChildren(
    h("progress", { max: String(total || 1), value: String(DONE.has(s.status) ? total || 1 : done),
      "aria-label": t("sources.progress_label", { done, total }) }),
    h("small", {}, t("sources.pages_count", { done: fmtNum(s.pages_done), total: fmtNum(total), failed: fmtNum(s.pages_failed) })));
  c.chunks.textContent = fmtNum(s.chunks_count);
  c.synced.textContent = fmtDate(s.last_synced_at);
}

async function togglePages(row) {
  if (row.pages && row.pages.isConnected) {
    row.pages.remove(); openPages = null; row.pagesButton.setAttribute("aria-expanded", "false");
    return;
  }
  if (openPages && rows.has(openPages)) { const other = rows.get(openPages); other.pages?.remove(); other.pagesButton.setAttribute("aria-expanded", "false"); }
  openPages = row.id;
  row.pagesButton.setAttribute("aria-expanded", "true");
  row.pages = h("tr", { class: "pages-row" }, h("td", { colspan: "7" }, t("common.loading")));
  row.tr.after(row.pages);
  await loadPages(row, true);
}

async function loadPages(row, first) {
  const failedOnly = row.pages.querySelector("input[type=checkbox]")?.checked || false;
  const { data } = await api(`/api/sources/${encodeURIComponent(row.id)}/pages?limit=100${failedOnly ? "&status=failed" : ""}`);
  const toggle = h("input", { type: "checkbox", id: `failed-${row.id}`, checked: failedOnly || null, onchange: () => loadPages(row, false) });
  const list = data.map((p) => h("tr", { class: p.status === "failed" ? "failed" : "" },
    h("td", { class: "mono wrap" }, p.url), h("td", {}, t(`sources.page_${p.status}`)), h("td", {}, fmtNum(p.attempts)),
    h("td", {}, fmtNum(p.chunks)), h("td", { class: "error" }, p.error || "")));
  const focused = document.activeElement && row.pages.contains(document.activeElement) ? document.activeElement.id : null;
  row.pages.firstChild.replaceChildren(
    h("div", { class: "row" }, h("strong", {}, t("sources.pages_of", { name: row.cells.name.firstChild?.textContent || row.id })),
      h("label", { class: "inline" }, toggle, " ", t("sources.failed_only"))),
    table([t("sources.url"), t("sources.status"), t("sources.attempts"), t("sources.chunks"), t("sources.error")],
      list.length ? list : empty(t("sources.no_pages"), 5)));
  if (focused) document.getElementById(focused)?.focus();
  if (first) toggle.focus();
}

async function resync(source) {
  try { await api(`/api/sources/${encodeURIComponent(source.id)}/resync`, { method: "POST" }); notify(t("sources.resyncing")); await refresh(false); }
  catch (err) { notify(errorText(err), "error"); }
}

async function remove(source) {
  if (!confirm(t("sources.confirm_delete", { name: source.title || source.url || source.id }))) return;
  try { await api(`/api/sources/${encodeURIComponent(source.id)}`, { method: "DELETE" }); notify(t("common.deleted")); await refresh(false); }
  catch (err) { notify(errorText(err), "error"); }
}
