// API keys: create (the key and a chat key's identity secret are shown once), list, rotate the secret, revoke.
import { api, errorText, fmtDate, field, h, lines, notify, state, t, table } from "./core.js";

let box, shown, names = {};

export async function render(main) {
  box = h("div");
  shown = h("div", { id: "new-key", "aria-live": "polite" });
  const { data } = await api("/api/assistants?limit=100");
  names = Object.fromEntries(data.map((a) => [a.id, a.name]));
  main.append(createForm(data), shown, box);
  await list();
}

/** A secret shown only once, with a copy button. */
function once(label, id, value, note) {
  const input = h("input", { id, readonly: true, value, class: "mono", "aria-label": label });
  return h("div", { class: "field" }, h("strong", {}, note),
    h("div", { class: "row" }, input, h("button", { type: "button", onclick: async () => {
      input.select();
      try { await navigator.clipboard.writeText(value); notify(t("keys.copied")); } catch { document.execCommand("copy"); notify(t("keys.copied")); }
    } }, t("keys.copy"))));
}

function showOnce(...parts) {
  shown.replaceChildren(h("div", { class: "card once" }, ...parts,
    h("button", { type: "button", class: "secondary", onclick: () => shown.replaceChildren() }, t("keys.done"))));
  const first = shown.querySelector("input"); first.focus(); first.select();
}

function createForm(assistants) {
  const name = h("input", { id: "key-name", maxlength: "200" });
  const scope = h("select", { id: "key-scope" }, h("option", { value: "chat" }, t("keys.scope_chat")),
    h("option", { value: "admin" }, t("keys.scope_admin")));
  // Chat keys reach only the assistants chosen here (one preselected when there is only one).
  const reach = h("select", { id: "key-assistants", multiple: true, size: String(Math.min(5, Math.max(2, assistants.length))) },
    assistants.map((a) => h("option", { value: a.id, selected: assistants.length === 1 || null }, a.name)));
  const origins = h("textarea", { id: "key-origins", rows: "2", spellcheck: "false", placeholder: "https://www.example.com" });
  const verified = h("input", { type: "checkbox", id: "key-require-identity" });
  const error = h("p", { class: "error", role: "alert" });
  const chatOnly = h("div", {}, field(t("keys.assistants"), reach, t("keys.assistants_hint")),
    field(t("assistants.origins"), origins, t("keys.origins_hint")),
    h("div", { class: "field" }, h("label", { for: verified.id }, verified, " ", t("keys.require_identity")),
      h("small", { class: "hint" }, t("keys.require_identity_hint"))));
  scope.addEventListener("change", () => { chatOnly.hidden = scope.value !== "chat"; });
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault(); error.textContent = "";
    const chat = scope.value === "chat";
    try {
      const created = await api("/api/keys", { method: "POST", body: { name: name.value.trim(), scope: scope.value,
        ...(chat ? { allowed_origins: lines(origins.value), assistant_ids: [...reach.selectedOptions].map((o) => o.value),
          require_identity: verified.checked } : {}) } });
      form.reset(); chatOnly.hidden = false;
      showOnce(once(t("keys.the_key"), "created-key", created.key, t("keys.once")),
        created.identity_secret ? once(t("keys.identity_secret"), "created-identity-secret", created.identity_secret, t("keys.identity_secret_once")) : null);
      await list();
    } catch (err) { error.textContent = errorText(err); }
  } },
  h("h3", {}, t("keys.new")), h("div", { class: "row" }, field(t("common.name"), name), field(t("keys.scope"), scope)),
  chatOnly, error, h("button", { type: "submit" }, t("keys.create")));
  return form;
}

async function list() {
  const { data } = await api("/api/keys");
  const rows = data.slice().reverse().map((k) => {
    const mine = state.key.startsWith(k.prefix);
    return h("tr", { class: k.revoked_at ? "revoked" : "" },
      h("td", {}, k.name || "—", mine ? h("span", { class: "badge" }, t("keys.this_session")) : null),
      h("td", { class: "mono" }, `${k.prefix}…`), h("td", {}, t(`keys.scope_${k.scope}`)),
      h("td", {}, k.scope === "chat" ? (k.assistant_ids.map((id) => names[id] || id).join(", ") || t("keys.no_assistants")) : t("keys.all_assistants")),
      h("td", {}, k.allowed_origins.length ? k.allowed_origins.join(", ") : t("assistants.any_origin"),
        k.require_identity ? h("span", { class: "badge" }, t("keys.verified_only")) : null),
      h("td", {}, fmtDate(k.created_at)), h("td", {}, fmtDate(k.last_used_at)),
      h("td", {}, k.revoked_at ? t("keys.revoked_at", { date: fmtDate(k.revoked_at) }) : t("keys.active")),
      h("td", { class: "actions" }, k.revoked_at || k.scope !== "chat" ? null : h("button", { type: "button", class: "secondary",
        "aria-label": t("keys.rotate_named", { name: k.name || k.prefix }), onclick: () => rotate(k) }, t("keys.rotate")),
      k.revoked_at ? null : h("button", { type: "button", class: "danger",
        "aria-label": t("keys.revoke_named", { name: k.name || k.prefix }), onclick: () => revoke(k, mine) }, t("keys.revoke"))));
  });
  box.replaceChildren(table([t("common.name"), t("keys.prefix"), t("keys.scope"), t("keys.assistants"), t("assistants.origins"), t("common.created"),
    t("keys.last_used"), t("keys.state"), ""], rows, t("nav.keys")));
}

async function rotate(k) {
  if (!confirm(t("keys.confirm_rotate", { name: k.name || k.prefix }))) return;
  try {
    const rotated = await api(`/api/keys/${encodeURIComponent(k.id)}/identity-secret`, { method: "POST" });
    showOnce(once(t("keys.identity_secret"), "created-identity-secret", rotated.identity_secret, t("keys.identity_secret_once")));
  } catch (err) { notify(errorText(err), "error"); }
  await list();
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
