// Templates: list, create, edit (each save is a new version), versions with a diff between two of them.
import { api, errorText, fmtDate, field, h, notify, stableJson, t, table, empty } from "./core.js";
import { renderDiff } from "./diff.js";

let root;

export async function render(main) {
  root = h("div");
  main.append(h("div", { class: "toolbar" }, h("button", { type: "button", onclick: () => editor(null) }, t("templates.new"))), root);
  await list();
}

async function list() {
  const { data } = await api("/api/templates");
  const rows = data.map((tpl) => h("tr", {},
    h("td", {}, tpl.name, tpl.builtin ? h("span", { class: "badge" }, t("templates.builtin")) : null),
    h("td", { class: "mono" }, tpl.id), h("td", {}, `v${tpl.version}`), h("td", {}, tpl.config.language),
    h("td", {}, fmtDate(tpl.updated_at)),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => editor(tpl) }, tpl.builtin ? t("templates.duplicate") : t("common.edit")),
      h("button", { type: "button", class: "secondary", onclick: () => versions(tpl) }, t("templates.versions")),
      tpl.builtin ? null : h("button", { type: "button", class: "danger", onclick: () => remove(tpl) }, t("common.delete")))));
  root.replaceChildren(table([t("common.name"), t("common.id"), t("templates.version"), t("common.language"), t("common.updated"), ""],
    rows.length ? rows : empty(t("templates.none"), 6), t("nav.templates")));
}

async function editor(tpl) {
  // A built-in template cannot change: "duplicate" opens its config as a new template.
  const creating = !tpl || tpl.builtin;
  const base = tpl ? tpl.config : (await api("/api/templates/default")).config;
  const name = h("input", { required: true, maxlength: "200", value: creating && tpl ? `${tpl.name} (${t("templates.copy")})` : tpl?.name || "" });
  const config = h("textarea", { rows: "22", class: "mono", spellcheck: "false" }, stableJson(base));
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    let parsed;
    try { parsed = JSON.parse(config.value); } catch (err) { error.textContent = t("templates.bad_json", { error: err.message }); return; }
    try {
      const body = { name: name.value.trim(), ...parsed };
      const saved = creating ? await api("/api/templates", { method: "POST", body })
        : await api(`/api/templates/${encodeURIComponent(tpl.id)}`, { method: "PUT", body });
      notify(creating ? t("templates.created", { name: saved.name }) : t("templates.saved", { name: saved.name, version: saved.version }));
      await list();
    } catch (err) { error.textContent = errorText(err); }
  } },
  h("h3", {}, creating ? t("templates.new") : t("templates.edit", { name: tpl.name })),
  field(t("common.name"), name),
  field(t("templates.config"), config, t("templates.config_hint")),
  error,
  h("div", { class: "buttons" }, h("button", { type: "submit" }, creating ? t("common.create") : t("templates.save_version")),
    h("button", { type: "button", class: "secondary", onclick: () => list() }, t("common.cancel"))));
  root.replaceChildren(form);
  name.focus();
}

async function versions(tpl) {
  const { data } = await api(`/api/templates/${encodeURIComponent(tpl.id)}/versions`);
  const pick = (id, value) => h("select", { id }, data.map((v) => h("option", { value: String(v.version) }, `v${v.version}${v.latest ? ` (${t("templates.latest")})` : ""}`)));
  const left = pick("diff-a"), right = pick("diff-b");
  left.value = String(data[Math.min(1, data.length - 1)].version);
  right.value = String(data[0].version);
  const out = h("div", { "aria-live": "polite" });
  const byVersion = Object.fromEntries(data.map((v) => [String(v.version), v]));
  const compare = () => out.replaceChildren(
    h("h4", {}, t("templates.diff_title", { a: left.value, b: right.value })),
    renderDiff(stableJson(byVersion[left.value].config), stableJson(byVersion[right.value].config)));
  left.addEventListener("change", compare); right.addEventListener("change", compare);
  const rows = data.map((v) => h("tr", {}, h("td", {}, `v${v.version}`), h("td", {}, v.latest ? t("templates.latest") : ""),
    h("td", {}, fmtDate(v.created_at)), h("td", { class: "mono" }, v.created_by || "—")));
  root.replaceChildren(h("section", { class: "card" },
    h("h3", {}, t("templates.versions_of", { name: tpl.name })),
    table([t("templates.version"), "", t("common.created"), t("templates.created_by")], rows),
    h("div", { class: "row" }, field(t("templates.compare_from"), left), field(t("templates.compare_to"), right)),
    out,
    h("button", { type: "button", class: "secondary", onclick: () => list() }, t("common.back"))));
  compare();
}

async function remove(tpl) {
  if (!confirm(t("templates.confirm_delete", { name: tpl.name }))) return;
  try {
    await api(`/api/templates/${encodeURIComponent(tpl.id)}`, { method: "DELETE" });
    notify(t("common.deleted"));
  } catch (err) { notify(errorText(err), "error"); }
  await list();
}
