// API keys: create (the key is shown once), list, revoke.
import { api, errorText, fmtDate, field, h, lines, notify, state, t, table } from "./core.js";

let box, shown;

export async function render(main) {
  box = h("div");
  shown = h("div", { id: "new-key", "aria-live": "polite" });
  main.append(createForm(), shown, box);
  await list();
}

function createForm() {
  const name = h("input", { id: "key-name", maxlength: "200" });
  const scope = h("select", { id: "key-scope" }, h("option", { value: "chat" }, t("keys.scope_chat")),
    h("option", { value: "admin" }, t("keys.scope_admin")));
  const origins = h("textarea", { id: "key-origins", rows: "2", spellcheck: "false", placeholder: "https://www.example.com" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault(); error.textContent = "";
    try {
      const created = await api("/api/keys", { method: "POST", body: { name: name.value.trim(), scope: scope.value, allowed_origins: lines(origins.value) } });
      form.reset();
      const value = h("input", { id: "created-key", readonly: true, value: created.key, class: "mono", "aria-label": t("keys.the_key") });
      shown.replaceChildren(h("div", { class: "card once" },
        h("strong", {}, t("keys.once")),
        h("div", { class: "row" }, value, h("button", { type: "button", onclick: async () => {
          value.select();
          try { await navigator.clipboard.writeText(created.key); notify(t("keys.copied")); } catch { document.execCommand("copy"); notify(t("keys.copied")); }
        } }, t("keys.copy")),
        h("button", { type: "button", class: "secondary", onclick: () => shown.replaceChildren() }, t("keys.done")))));
      value.focus(); value.select();
      await list();
    } catch (err) { error.textContent = errorText(err); }
  } },
  h("h3", {}, t("keys.new")), h("div", { class: "row" }, field(t("common.name"), name), field(t("keys.scope"), scope)),
  field(t("assistants.origins"), origins, t("keys.origins_hint")), error, h("button", { type: "submit" }, t("keys.create")));
  return form;
}

async function list() {
  const { data } = await api("/api/keys");
  const rows = data.slice().reverse().map((k) => {
    const mine = state.key.startsWith(k.prefix);
    return h("tr", { class: k.revoked_at ? "revoked" : "" },
      h("td", {}, k.name || "—", mine ? h("span", { class: "badge" }, t("keys.this_session")) : null),
      h("td", { class: "mono" }, `${k.prefix}…`), h("td", {}, t(`keys.scope_${k.scope}`)),
      h("td", {}, k.allowed_origins.length ? k.allowed_origins.join(", ") : t("assistants.any_origin")),
      h("td", {}, fmtDate(k.created_at)), h("td", {}, fmtDate(k.last_used_at)),
      h("td", {}, k.revoked_at ? t("keys.revoked_at", { date: fmtDate(k.revoked_at) }) : t("keys.active")),
      h("td", { class: "actions" }, k.revoked_at ? null : h("button", { type: "button", class: "danger",
        "aria-label": t("keys.revoke_named", { name: k.name || k.prefix }), onclick: () => revoke(k, mine) }, t("keys.revoke"))));
  });
  box.replaceChildren(table([t("common.name"), t("keys.prefix"), t("keys.scope"), t("assistants.origins"), t("common.created"),
    t("keys.last_used"), t("keys.state"), ""], rows, t("nav.keys")));
}

async function revoke(k, mine) {
  if (!confirm(t(mine ? "keys.confirm_revoke_mine" : "keys.confirm_revoke", { name: k.name || k.prefix }))) return;
  try {
    await api(`/api/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
    notify(t("keys.revoked"));
    if (mine) { location.reload(); return; }
  } catch (err) { notify(errorText(err), "error"); }
  await list();
}
