// Feedback: what end users thought of the answers, newest first, by assistant and rating.
import { api, assistantPicker, fill, fmtDate, field, h, t, table, empty } from "./core.js";

let picker, rating, box, cursor, items;

export async function render(main) {
  const { select } = await assistantPicker(() => reload(), { allowAll: true });
  picker = select;
  rating = h("select", { id: "rating" }, h("option", { value: "" }, t("feedback.all")),
    h("option", { value: "up" }, t("feedback.up")), h("option", { value: "down" }, t("feedback.down")));
  rating.addEventListener("change", () => reload());
  box = h("div");
  main.append(h("div", { class: "toolbar" }, field(t("sources.assistant"), picker), field(t("feedback.rating"), rating)), box);
  await reload();
}

async function reload() { items = []; cursor = null; await more(); }

async function more() {
  const query = new URLSearchParams({ limit: "50" });
  if (picker.value) query.set("assistant_id", picker.value);
  if (rating.value) query.set("rating", rating.value);
  if (cursor) query.set("cursor", cursor);
  const page = await api(`/api/feedback?${query}`);
  items = items.concat(page.data);
  cursor = page.next_cursor;
  const rows = items.map((f) => h("tr", {},
    h("td", {}, fmtDate(f.created_at)),
    h("td", {}, h("span", { class: `badge rating-${f.rating}` }, t(`feedback.${f.rating}`))),
    h("td", {}, f.comment || "—"),
    h("td", { class: "answer" }, f.answer.length > 240 ? `${f.answer.slice(0, 240)}…` : f.answer),
    h("td", {}, h("a", { href: `#/conversations?open=${encodeURIComponent(f.conversation_id)}` }, t("feedback.open")))));
  fill(box, table([t("common.created"), t("feedback.rating"), t("feedback.comment"), t("feedback.answer"), ""],
    rows.length ? rows : empty(t("feedback.none"), 5), t("nav.feedback")),
  cursor ? h("button", { type: "button", class: "secondary", onclick: () => more() }, t("common.more")) : null);
}
