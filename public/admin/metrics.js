// Metrics: time to first token, tokens, cache hit rate and failures over time, drawn as inline SVG.
import { api, field, fmtNum, h, t } from "./core.js";
import { chart } from "./chart.js";

const RANGES = { "1h": ["-1h", "5m", 3600e3], "24h": ["-24h", "1h", 864e5], "7d": ["-7d", "6h", 7 * 864e5], "30d": ["-30d", "1d", 30 * 864e5] };
const BUCKET_MS = { "5m": 3e5, "1h": 36e5, "6h": 216e5, "1d": 864e5 };
const COLORS = ["#2f6fed", "#e8590c", "#2b8a3e", "#c2255c"];
let box, range;

export async function render(main) {
  range = h("select", { id: "range" }, Object.keys(RANGES).map((r) => h("option", { value: r }, t(`metrics.range_${r}`))));
  range.value = "24h";
  range.addEventListener("change", draw);
  box = h("div", { class: "charts", "aria-live": "polite" });
  main.append(h("div", { class: "toolbar" }, field(t("metrics.range"), range),
    h("button", { type: "button", class: "secondary", onclick: draw }, t("metrics.refresh"))), box);
  await draw();
}

async function series(name, start, bucket) {
  const res = await api(`/api/metrics?name=${encodeURIComponent(name)}&start=${encodeURIComponent(start)}&bucket=${bucket}`);
  return { start: Date.parse(res.start), end: Date.parse(res.end), points: new Map(res.points.map((p) => [Date.parse(p.start), p])) };
}

async function draw() {
  const [start, bucket, span] = RANGES[range.value];
  const names = ["chat.ttft_ms", "chat.tokens_in", "chat.tokens_out", "cache.hit", "cache.miss", "job.failed"];
  const [ttft, tin, tout, hit, miss, failed] = await Promise.all(names.map((n) => series(n, start, bucket)));
  const size = BUCKET_MS[bucket];
  const end = ttft.end, from = end - span;
  const times = [];
  for (let tm = Math.floor(from / size) * size; tm < end; tm += size) times.push(tm);
  const pick = (s, f) => times.map((tm) => (s.points.has(tm) ? f(s.points.get(tm)) : null));
  const sum = (p) => p.avg * p.count;
  const total = (values) => values.reduce((a, v) => a + (v || 0), 0);

  const p50 = pick(ttft, (p) => p.p50), p95 = pick(ttft, (p) => p.p95);
  const inTok = pick(tin, sum), outTok = pick(tout, sum);
  const hits = pick(hit, (p) => p.count), misses = pick(miss, (p) => p.count);
  const rate = times.map((_, i) => (hits[i] || misses[i] ? (100 * (hits[i] || 0)) / ((hits[i] || 0) + (misses[i] || 0)) : null));
  const fails = pick(failed, (p) => p.count);
  const lastOf = (values) => [...values].reverse().find((v) => v != null);
  const lookups = total(hits) + total(misses);

  const card = (id, title, figure, svg, legend) => h("section", { class: "card chart-card", id: `chart-${id}` },
    h("h3", {}, title), h("p", { class: "figure" }, figure), svg,
    legend.length > 1 ? h("ul", { class: "legend" }, legend.map((l, i) => h("li", {}, h("span", { class: "swatch", style: `background:${COLORS[i]}` }), l))) : null);
  const common = { times, start: from, end };
  box.replaceChildren(
    card("ttft", t("metrics.ttft"), lastOf(p50) == null ? t("metrics.no_data") : t("metrics.ttft_figure", { p50: fmtNum(lastOf(p50)), p95: fmtNum(lastOf(p95)) }),
      chart({ ...common, title: t("metrics.ttft"), unit: " ms", series: [{ name: "p50", color: COLORS[0], values: p50 }, { name: "p95", color: COLORS[1], values: p95 }] }),
      ["p50", "p95"]),
    card("tokens", t("metrics.tokens"), t("metrics.tokens_figure", { in: fmtNum(total(inTok)), out: fmtNum(total(outTok)) }),
      chart({ ...common, kind: "bar", title: t("metrics.tokens"), series: [{ name: t("metrics.tokens_in"), color: COLORS[0], values: inTok }, { name: t("metrics.tokens_out"), color: COLORS[1], values: outTok }] }),
      [t("metrics.tokens_in"), t("metrics.tokens_out")]),
    card("cache", t("metrics.cache"), lookups ? t("metrics.cache_figure", { rate: fmtNum((100 * total(hits)) / lookups, 1), n: fmtNum(lookups) }) : t("metrics.no_data"),
      chart({ ...common, title: t("metrics.cache"), unit: " %", max: 100, series: [{ name: t("metrics.hit_rate"), color: COLORS[2], values: rate }] }),
      [t("metrics.hit_rate")]),
    card("failures", t("metrics.failures"), t("metrics.failures_figure", { n: fmtNum(total(fails)) }),
      chart({ ...common, kind: "bar", title: t("metrics.failures"), series: [{ name: t("metrics.failed_jobs"), color: COLORS[3], values: fails }] }),
      [t("metrics.failed_jobs")]));
}
