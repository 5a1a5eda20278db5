"""Language detection (shared/i18n/language.py): what it costs and how often it is right on real short texts.

    python bench/language_detect.py [--runs 7] [--per-language 40]

Cost: importing shared.i18n.language and the first detect (which imports pycld2), each in a fresh interpreter
(median of --runs, CPU time), then µs per call for a question and for a page. Accuracy: real translated
texts this machine ships, labelled by the folder they come from: the messages of gettext catalogs
(/usr/share/locale/<lang>/LC_MESSAGES/*.mo, 30-200 characters, about chat-message length, and the English
originals of the German ones), and the first prose section of translated manual pages (/usr/share/man/<lang>/,
needs `man`; a page whose words mostly match its English original is left out as untranslated), whole
(up to 1,500 characters) and cut to 200. "unsure" is detect() returning None (the caller's fallback);
"wrong" is another language.
"""

from __future__ import annotations

import argparse
import gettext
import glob
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LANGS = ("de", "fr", "es", "it", "nl", "pl", "pt", "sv", "ru", "da", "cs")
# re is imported first: every function that uses shared.i18n.language has loaded it already.
COLD = ("import re, sys, time; sys.path.insert(0, sys.argv[1]); c = time.process_time(); import shared.i18n.language "
        "as L; "
        "m = time.process_time(); L.detect('Wie viele Wohnungen hat das Haus?'); d = time.process_time(); "
        "print((m - c) * 1000, (d - m) * 1000)")


def cold_costs(runs: int) -> tuple[float, float]:
    module, first = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", COLD, str(ROOT)], capture_output=True, text=True, check=True)
        a, b = map(float, out.stdout.split())
        module.append(a)
        first.append(b)
    return statistics.median(module), statistics.median(first)


def per_call_us(text: str, n: int) -> float:
    from shared.i18n.language import detect

    start = time.perf_counter()
    for _ in range(n):
        detect(text)
    return (time.perf_counter() - start) / n * 1e6


def catalog_messages(per_language: int) -> list[tuple[str, str, str]]:
    samples: list[tuple[str, str, str]] = []
    for lang in LANGS:
        pairs = []
        for path in sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo")):
            try:
                with open(path, "rb") as handle:
                    catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
            except Exception:
                continue
            pairs += [(k, v) for k, v in catalog.items() if isinstance(k, str) and isinstance(v, str) and k != v
                      and 30 <= len(v) <= 200 and not re.search(r"[%{\n]", v)]
        random.shuffle(pairs)
        samples += [("message", lang, v) for _, v in pairs[:per_language]]
        if lang == "de":
            samples += [("message", "en", k) for k, _ in pairs[per_language:per_language * 2] if 30 <= len(k) <= 200]
    return samples


def first_prose(path: str) -> str:
    """The section after NAME and SYNOPSIS of a rendered manual page, as one line."""
    try:
        text = subprocess.run(["man", "-l", path], capture_output=True, text=True, timeout=10,
                              env={**os.environ, "MANWIDTH": "100"}).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = re.sub(r".\x08", "", text).splitlines()[1:-1]
    heads = [i for i, line in enumerate(lines) if line and not line[0].isspace()]
    if len(heads) < 3:
        return ""
    end = heads[3] if len(heads) > 3 else len(lines)
    return " ".join(" ".join(line.split()) for line in lines[heads[2] + 1:end] if line.strip())


def manual_pages(per_language: int) -> list[tuple[str, str, str]]:
    if not shutil.which("man"):
        return []
    samples: list[tuple[str, str, str]] = []
    english = 0
    for lang in LANGS:
        paths = sorted(glob.glob(f"/usr/share/man/{lang}/man[1-8]/*"))
        random.shuffle(paths)
        kept = 0
        for path in paths:
            original = "/usr/share/man/" + path.split(f"/man/{lang}/", 1)[1]
            if kept >= per_language or not os.path.exists(original):
                continue
            body, source = first_prose(path), first_prose(original)
            if len(body) < 400 or len(source) < 400:
                continue
            words, source_words = set(re.findall(r"\w+", body.lower())), set(re.findall(r"\w+", source.lower()))
            if len(words & source_words) / len(words | source_words) > 0.25:  # mostly untranslated
                continue
            samples += [("page", lang, body[:1500]), ("page (200 chars)", lang, body[:200])]
            kept += 1
            if english < 3 * per_language and kept % 2:
                samples += [("page", "en", source[:1500]), ("page (200 chars)", "en", source[:200])]
                english += 1
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--per-language", type=int, default=40)
    args = parser.parse_args()
    random.seed(7)
    from shared.i18n.language import detect

    module_ms, first_ms = cold_costs(args.runs)
    question = "Wie viele Wohnungen hat das Haus?"
    page = (ROOT / "README.md").read_text()[:6000]
    print(f"import shared.i18n.language: {module_ms:.1f} ms CPU; first detect (imports pycld2): {first_ms:.1f} ms CPU")
    print(f"per call: question {per_call_us(question, 2000):.0f} µs, 6 kB page {per_call_us(page, 200):.0f} µs")
    samples = catalog_messages(args.per_language) + manual_pages(max(1, args.per_language // 4))
    if not samples:
        print("no gettext catalogs or manual pages on this machine: accuracy not measured")
        return
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for kind, lang, text in samples:
        found = detect(text)
        counts[kind][0 if found == lang else 1 if found is None else 2] += 1
    print(f"{'texts':<18} {'right':>6} {'unsure':>7} {'wrong':>6}")
    for kind, (right, unsure, wrong) in sorted(counts.items()):
        total = right + unsure + wrong
        print(f"{kind:<18} {right:>6} {unsure:>7} {wrong:>6}   ({100 * right / total:.0f}% of {total})")


if __name__ == "__main__":
    main()
