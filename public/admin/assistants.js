// Assistants: list, create from a template, edit overrides and allowed origins, chat with one.
import { api, errorText, fmtDate, field, h, lines, notify, stableJson, state, t, table, empty } from "./core.js";
import { chatWith } from "./chat.js";

let root;

export async function render(main) {
  root = h("div");
  main.append(h("div", { class: "toolbar" }, h("button", { type: "button", onclick: () => editor(null) }, t("assistants.new"))), root);
  await list();
}

async function list() {
  const { data } = await api("/api/assistants?limit=100");
  const rows = data.map((a) => h("tr", {},
    h("td", {}, a.name), h("td", { class: "mono" }, a.id),
    h("td", {}, `${a.template_id} · ${a.template_version ? `v${a.template_version}` : t("assistants.latest", { version: a.effective_template_version })}`),
    h("td", {}, a.config.language),
    h("td", {}, a.allowed_origins.length ? a.allowed_origins.join(", ") : t("assistants.any_origin")),
    h("td", {}, fmtDate(a.created_at)),
    h("td", { class: "actions" },
      h("button", { type: "button", onclick: () => chat(a) }, t("assistants.chat")),
      h("a", { class: "button secondary", href: `#/sources?assistant=${encodeURIComponent(a.id)}` }, t("nav.sources")),
      h("button", { type: "button", class: "secondary", onclick: () => editor(a) }, t("common.edit")),
      h("button", { type: "button", class: "danger", onclick: () => remove(a) }, t("common.delete")))));
  root.replaceChildren(table([t("common.name"), t("common.id"), t("assistants.template"), t("common.language"),
    t("assistants.origins"), t("common.created"), ""], rows.length ? rows : empty(t("assistants.none"), 7), t("nav.assistants")));
}

async function chat(a) {
  try { await chatWith(a); } catch (err) { notify(errorText(err), "error"); }
}

async function editor(a) {
  const { data: templates } = await api("/api/templates");
  const name = h("input", { required: true, maxlength: "200", value: a?.name || "" });
  const template = h("select", {}, templates.map((x) => h("option", { value: x.id }, `${x.name} (${x.id})`)));
  template.value = a?.template_id || "default";
  const pinned = h("input", { type: "number", min: "1", value: a?.template_version ?? "" });
  const origins = h("textarea", { rows: "3", spellcheck: "false" }, (a?.allowed_origins || []).join("\n"));
  const error = h("p", { class: "error", role: "alert" });
  let overrides, language, greeting, questions;
  const fields = [field(t("common.name"), name), field(t("assistants.template"), template)];
  if (a) {
    // Editing: every override as JSON (they replace the template's fields; `retrieval` merges key by key).
    overrides = h("textarea", { rows: "12", class: "mono", spellcheck: "false" }, stableJson(a.overrides));
    fields.push(field(t("assistants.pinned"), pinned, t("assistants.pinned_hint")),
      field(t("assistants.overrides"), overrides, t("assistants.overrides_hint")));
  } else {
    language = h("select", {}, h("option", { value: "" }, t("assistants.from_template")),
      Object.entries(state.languages).map(([code, messages]) => h("option", { value: code }, `${messages["language.name"] || code} (${code})`)));
    greeting = h("textarea", { rows: "2", maxlength: "2000" });
    questions = h("textarea", { rows: "3" });
    fields.push(field(t("common.language"), language), field(t("assistants.greeting"), greeting),
      field(t("assistants.questions"), questions, t("common.one_per_line")));
  }
  fields.push(field(t("assistants.origins"), origins, t("assistants.origins_hint")));
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    const body = { name: name.value.trim(), template_id: template.value, allowed_origins: lines(origins.value) };
    if (a) {
      try { body.overrides = JSON.parse(overrides.value || "{}"); } catch (err) { error.textContent = t("templates.bad_json", { error: err.message }); return; }
      body.template_version = pinned.value ? Number(pinned.value) : null;
    } else {
      body.overrides = {};
      if (language.value) body.overrides.language = language.value;
      if (greeting.value.trim()) body.overrides.greeting = greeting.value.trim();
      if (lines(questions.value).length) body.overrides.suggested_questions = lines(questions.value);
    }
    try {
      const saved = a ? await api(`/api/assistants/${encodeURIComponent(a.id)}`, { method: "PATCH", body })
        : await api("/api/assistants", { method: "POST", body });
      notify(t(a ? "assistants.saved" : "assistants.created", { name: saved.name }));
      await list();
    } catch (err) { error.textContent = errorText(err); }
  } },
  h("h3", {}, a ? t("assistants.edit", { name: a.name }) : t("assistants.new")), fields, error,
  h("div", { class: "buttons" }, h("button", { type: "submit" }, a ? t("common.save") : t("common.create")),
    h("button", { type: "button", class: "secondary", onclick: () => list() }, t("common.cancel"))));
  root.replaceChildren(form);
  name.focus();
}

async function remove(a) {
  if (!confirm(t("assistants.confirm_delete", { name: a.name }))) return;
  try {
    await api(`/api/assistants/${encodeURIComponent(a.id)}`, { method: "DELETE" });
    notify(t("common.deleted"));
  } catch (err) { notify(errorText(err), "error"); }
  await list();
}
