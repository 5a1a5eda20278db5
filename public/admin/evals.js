// Evaluations: sets of cases per assistant (add, draft, accept, JSONL import/export), runs at a template version,
// two runs side by side and each quality metric over the template's versions.
import { ApiError, api, assistantPicker, download, empty, fill, fmtDate, field, h, notify, state, t, table } from "./core.js";

const QUALITY = ["hit@1", "hit@3", "hit@5", "mrr", "citation_validity", "key_fact_recall", "abstain_precision",
  "abstain_recall", "answer_support"];
const OTHER = ["ttft_p50_ms", "ttft_p95_ms", "tokens_per_case", "cost_usd", "passed", "cases"];
let picker, setPick, box, timer;

export async function render(main) {
  ({ select: picker } = await assistantPicker(() => loadSets()));
  setPick = h("select", { id: "eval-set" });
  setPick.addEventListener("change", () => show());
  box = h("div");
  const name = h("input", { id: "eval-new-name", placeholder: t("evals.new_name") });
  main.append(h("div", { class: "toolbar" }, field(t("sources.assistant"), picker), field(t("evals.set"), setPick),
    h("form", { class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      const made = await api("/api/evals/sets", { method: "POST", body: { assistant_id: picker.value, name: name.value } });
      name.value = ""; await loadSets(made.id);
    } }, field(t("evals.new_set"), name), h("button", { type: "submit" }, t("evals.create")))), box);
  await loadSets();
  return () => clearTimeout(timer);
}

async function loadSets(selected) {
  const sets = picker.value ? (await api(`/api/evals/sets?assistant_id=${encodeURIComponent(picker.value)}`)).data : [];
  fill(setPick, sets.map((s) => h("option", { value: s.id }, `${s.name} (${s.active_cases}/${s.draft_cases})`)));
  if (selected) setPick.value = selected;
  await show();
}

const fmt = (v) => (v == null ? "—" : typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : String(v));

async function show() {
  clearTimeout(timer);
  if (!setPick.value) return fill(box, h("p", { class: "muted" }, t("evals.none")));
  const id = encodeURIComponent(setPick.value);
  const [cases, runs] = await Promise.all([api(`/api/evals/sets/${id}/cases`), api(`/api/evals/runs?set_id=${id}`)]);
  const version = h("input", { id: "eval-version", type: "number", min: "1", placeholder: t("evals.current") });
  const file = h("input", { id: "eval-import", type: "file", accept: ".jsonl,.ndjson,.txt" });
  const act = (label, fn) => h("button", { type: "button", class: "secondary", onclick: async () => { await fn(); await loadSets(setPick.value); } }, label);
  const actions = h("div", { class: "toolbar" },
    act(t("evals.draft"), async () => notify(t("evals.drafted", { count: (await api(`/api/evals/sets/${id}/draft`, { method: "POST", body: {} })).count }))),
    act(t("evals.accept"), () => api(`/api/evals/sets/${id}/accept`, { method: "POST", body: {} })),
    act(t("evals.export"), async () => download(`${setPick.value}.jsonl`, await api(`/api/evals/sets/${id}/export`, { raw: true }).then((r) => r.blob()))),
    field(t("evals.import"), file), act(t("evals.import_go"), async () => {
      if (!file.files[0]) return;
      // JSONL is sent as it is (api() would wrap a string in JSON).
      const res = await fetch(`/api/evals/sets/${id}/import`, { method: "POST", body: await file.files[0].text(),
        headers: { Authorization: `Bearer ${state.key}`, "Content-Type": "application/x-ndjson" } });
      const payload = await res.json().catch(() => null);
      if (!res.ok) throw new ApiError(res.status, payload?.error);
      notify(t("evals.imported", { count: payload.imported }));
    }),
    field(t("evals.version"), version), act(t("evals.run"), () => api("/api/evals/runs", { method: "POST",
      body: { set_id: setPick.value, ...(version.value ? { template_version: Number(version.value) } : {}) } })));
  const picked = [];
  const runRows = runs.data.map((r) => h("tr", {},
    h("td", {}, h("input", { type: "checkbox", "aria-label": t("evals.compare_pick"), onchange: (e) => {
      if (e.target.checked) picked.push(r.id); else picked.splice(picked.indexOf(r.id), 1);
      if (picked.length === 2) compare(picked[0], picked[1]);
    } })),
    h("td", {}, fmtDate(r.created_at)), h("td", {}, `v${r.template_version}`), h("td", {}, t(`evals.status_${r.status}`)),
    h("td", {}, `${r.trigger}${r.alert ? " ⚠" : ""}`), ...["hit@5", "mrr", "citation_validity", "abstain_recall"].map((m) => h("td", {}, fmt(r.metrics?.[m])))));
  const caseRows = cases.data.map((c) => h("tr", {}, h("td", {}, c.question),
    h("td", {}, c.expect_abstain ? t("evals.abstain") : c.expected_sources.map((s) => s.url || s.document_id || s.chunk_id).join(", ")),
    h("td", {}, c.key_facts.join("; ")), h("td", {}, t(`evals.case_${c.status}`))));
  fill(box, actions,
    h("h3", {}, t("evals.runs")), table(["", t("common.created"), t("evals.version"), t("evals.status"), t("evals.trigger"), "hit@5", "MRR", t("evals.citations"), t("evals.abstain_recall")],
      runRows.length ? runRows : empty(t("evals.no_runs"), 9), t("evals.runs")),
    h("div", { id: "eval-compare" }), overVersions(runs.data),
    h("h3", {}, t("evals.cases")), table([t("evals.question"), t("evals.expected"), t("evals.facts"), t("evals.status")],
      caseRows.length ? caseRows : empty(t("evals.no_cases"), 4), t("evals.cases")));
  if (runs.data.some((r) => r.status === "queued" || r.status === "running")) timer = setTimeout(show, 3000);
}

/** Each quality metric of the newest finished run per template version, as bars. */
function overVersions(runs) {
  const latest = new Map();
  for (const r of runs) if (r.status === "succeeded" && !latest.has(r.template_version)) latest.set(r.template_version, r);
  const versions = [...latest.keys()].sort((a, b) => a - b);
  if (versions.length < 2) return null;
  return h("section", { "aria-label": t("evals.over_versions") }, h("h3", {}, t("evals.over_versions")),
    table([t("evals.metric"), ...versions.map((v) => `v${v}`)], QUALITY.map((m) => h("tr", {}, h("th", { scope: "row" }, m),
      versions.map((v) => { const value = latest.get(v).metrics?.[m];
        return h("td", {}, h("span", { class: "bar", style: `display:inline-block;height:.7em;background:currentColor;width:${Math.round((value ?? 0) * 80)}px` }), ` ${fmt(value)}`); }))),
    t("evals.over_versions")));
}

async function compare(a, b) {
  const diff = await api(`/api/evals/runs/${encodeURIComponent(a)}/compare/${encodeURIComponent(b)}`);
  const rows = [...QUALITY, ...OTHER].map((m) => { const d = diff.metrics[m] || {};
    return h("tr", {}, h("th", { scope: "row" }, m), h("td", {}, fmt(d.a)), h("td", {}, fmt(d.b)),
      h("td", { class: d.better === false ? "error" : "" }, fmt(d.delta))); });
  const changed = diff.cases.map((c) => h("tr", {}, h("td", {}, t(`evals.change_${c.change}`)), h("td", {}, c.question),
    h("td", {}, c.answer_a || "—"), h("td", {}, c.answer_b || "—")));
  fill(document.getElementById("eval-compare"), h("h3", {}, t("evals.compare", { a: `v${diff.a.template_version}`, b: `v${diff.b.template_version}` })),
    table([t("evals.metric"), `A v${diff.a.template_version}`, `B v${diff.b.template_version}`, "Δ"], rows, t("evals.compare", { a: "A", b: "B" })),
    table([t("evals.change"), t("evals.question"), "A", "B"], changed.length ? changed : empty(t("evals.no_changes"), 4), t("evals.change")));
}
