// A small line diff (longest common subsequence) for comparing two template versions.
import { h, t } from "./core.js";

/** [{op: " " | "-" | "+", text, a, b}] turning `before` into `after`; a and b are 1-based line numbers. */
export function lineDiff(before, after) {
  const A = before.split("\n"), B = after.split("\n");
  let head = 0;
  while (head < A.length && head < B.length && A[head] === B[head]) head++;
  let endA = A.length, endB = B.length;
  while (endA > head && endB > head && A[endA - 1] === B[endB - 1]) { endA--; endB--; }
  const a = A.slice(head, endA), b = B.slice(head, endB);
  // lcs[i][j] = length of the LCS of a[i:] and b[j:]; configs are small, so the table is too.
  const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let la = 0, lb = 0;
  const push = (op, text) => out.push({ op, text, a: op === "+" ? null : ++la, b: op === "-" ? null : ++lb });
  A.slice(0, head).forEach((line) => push(" ", line));
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) { push(" ", a[i]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) push("-", a[i++]);
    else push("+", b[j++]);
  }
  while (i < a.length) push("-", a[i++]);
  while (j < b.length) push("+", b[j++]);
  A.slice(endA).forEach((line) => push(" ", line));
  return out;
}

/** The diff as a table; unchanged runs longer than 2 * context lines are folded. */
export function renderDiff(before, after, context = 3) {
  const rows = lineDiff(before, after);
  const added = rows.filter((r) => r.op === "+").length, removed = rows.filter((r) => r.op === "-").length;
  const keep = rows.map((r, i) => r.op !== " " || rows.slice(Math.max(0, i - context), i + context + 1).some((x) => x.op !== " "));
  const body = [];
  let folded = 0;
  rows.forEach((r, i) => {
    if (!keep[i]) { folded++; return; }
    if (folded) { body.push(h("tr", { class: "fold" }, h("td", { colspan: "4" }, t("templates.diff_folded", { n: folded })))); folded = 0; }
    const cls = r.op === "+" ? "add" : r.op === "-" ? "del" : "";
    body.push(h("tr", { class: cls }, h("td", { class: "ln" }, r.a ?? ""), h("td", { class: "ln" }, r.b ?? ""),
      h("td", { class: "op", "aria-label": r.op === "+" ? t("templates.diff_added") : r.op === "-" ? t("templates.diff_removed") : null }, r.op),
      h("td", { class: "code" }, r.text)));
  });
  if (folded) body.push(h("tr", { class: "fold" }, h("td", { colspan: "4" }, t("templates.diff_folded", { n: folded }))));
  return h("div", { class: "diff" },
    h("p", { class: "diff-stats" }, added || removed ? t("templates.diff_stats", { added, removed }) : t("templates.diff_same")),
    h("table", {}, h("tbody", {}, body)));
}
