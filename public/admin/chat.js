// "Chat with this assistant": the real widget, injected with a chat key the console makes for this session.
import { api, h, notify, t } from "./core.js";

export async function chatWith(assistant) {
  // Chat keys reach only the assistants they were made for: one key per assistant and session.
  const slot = `de.admin.chat.${assistant.id}`;
  let chat = JSON.parse(sessionStorage.getItem(slot) || "null");
  if (chat) {
    // Someone may have revoked it under "API keys" since.
    const { data } = await api("/api/keys");
    if (!data.some((k) => k.id === chat.id && !k.revoked_at)) chat = null;
  }
  if (!chat) {
    const created = await api("/api/keys", { method: "POST", body: {
      name: t("chat.key_name"), scope: "chat", allowed_origins: [location.origin], assistant_ids: [assistant.id] } });
    chat = { key: created.key, id: created.id, prefix: created.prefix };
    sessionStorage.setItem(slot, JSON.stringify(chat));
  }
  document.querySelectorAll("dialog-engine-widget, script[data-console-widget]").forEach((el) => el.remove());
  const script = h("script", { src: "/widget.js", "data-assistant": assistant.id, "data-key": chat.key,
    "data-api": location.origin, "data-open": "true", "data-console-widget": "" });
  document.body.append(script);
  notify(t("chat.started", { name: assistant.name, prefix: chat.prefix }));
}
