"""Real documentation nobody here wrote, crawled as a user would crawl it: each set of tests/corpora (Sphinx,
Publican XHTML, texi2html + javadoc, German DocBook XHTML, MkDocs, Doxygen) is served on loopback and added as a `site`
source through the API. Every page must be read, (nearly) every page indexed, each page's own heading and
text must be in its chunks, and the navigation repeated on every page must not be what gets indexed.

MkDocs and Doxygen sets (mkdocs, jsoncpp) check those layouts only; the others are the retrieval
benchmark's. The crawl is capped per set to keep this file quick; bench/retrieval_quality.py ingests the full sets."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path

import lxml.html
import pytest

from tests import corpora
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced

PAGES_PER_SET = 40
# Text of each set's navigation, banner or footer, on most pages of it.
CHROME = {"flask": ["Quick search", "Created using Sphinx"], "debian-handbook": ["Download the ebook"],
          "gettext": ["[Contents]", "[ << ]"], "gimp-de": ["Report a documentation error"],
          "mkdocs": ["From here you can search these documents", "Maintained by the MkDocs Team"],
          "jsoncpp": ["JsonCpp project page", "Generated on", "List of all members"]}
MAX_CHROME_SHARE = 0.05   # of chunks that may contain a navigation string
MIN_OWN_TEXT_SHARE = 0.9  # of pages whose chunks hold their own heading and longest paragraph
NOT_WORD = re.compile(r"[\W_]+")


def letters(text: str) -> str:
    return NOT_WORD.sub("", text.lower())


def served_file(url: str, base: str) -> str:
    """The file of the set a URL is answered from ("dir/" serves "dir/index.html")."""
    path = url.removeprefix(f"{base}/")
    return path + corpora.START_PAGE if path.endswith("/") or not path else path


def parse(body: bytes):  # type: ignore[no-untyped-def]
    """A page of the sets as a tree, read independently of the code under test (every set is UTF-8)."""
    return lxml.html.fromstring(body, parser=lxml.html.HTMLParser(encoding="utf-8"))


def page_text(body: bytes) -> str:
    return " ".join(parse(body).text_content().split())


def own_text(body: bytes) -> tuple[str, str]:
    """(first top-level heading, longest paragraph) of a served page, read straight from its HTML."""
    tree = parse(body)
    headings = [" ".join(h.text_content().split()) for level in ("h1", "h2", "h3") for h in tree.iter(level)]
    heading = next((h for h in headings if h), "")  # the top-level one: sidebars use lower levels
    paragraphs = [" ".join(p.text_content().split()) for p in tree.xpath("//p | //div[@class='para'] | //dd")]
    return heading, max(paragraphs, key=len, default="")


@pytest.mark.parametrize("name", corpora.ALL)
def test_a_real_documentation_site_is_read_and_its_content_indexed(engine, name: str) -> None:
    root = corpora.extract(name)
    client, _, assistant_id = knowledge_setup(engine)
    started = time.monotonic()
    with corpora.serve(name) as base:
        created = add_source(client, assistant_id, kind="site", url=f"{base}/{corpora.START_PAGE}",
                             limit=PAGES_PER_SET)
        source = wait_synced(engine, client, created["id"], timeout=120)
    with engine.db() as conn:
        documents = conn.execute("SELECT url, status, error FROM documents WHERE source_id = %s",
                                 (source["id"],)).fetchall()
    chunks = chunk_rows(engine, source["id"])
    print(f"\n{name}: {len(documents)} pages, {len(chunks)} chunks in {time.monotonic() - started:.1f} s")

    assert source["status"] == "ready", source.get("error")
    assert len(documents) >= min(PAGES_PER_SET, len(corpora.pages(name)))
    unreadable = [d for d in documents if d["error"] and "unreadable" in d["error"]]
    assert not unreadable, unreadable[:3]
    shipped = set(corpora.pages(name))
    outside = [d for d in documents if served_file(d["url"], base) not in shipped]
    # Links to manuals the package does not ship (gettext links to autoconf and emacs) answer 404.
    assert all(d["status"] == "failed" and d["error"].startswith("not_found") for d in outside), outside
    failed = [d for d in documents if d["status"] != "ready" and d not in outside]
    assert not failed, failed

    by_url: dict[str, str] = defaultdict(str)
    for chunk in chunks:
        by_url[chunk["url"]] += f"\n{chunk['title']}\n{chunk['heading_path']}\n{chunk['text']}"
    ready = [d["url"] for d in documents if d["status"] == "ready"]
    assert len([url for url in ready if by_url[url].strip()]) >= len(ready) - 2  # empty pages (search.html)

    missing = []
    for url in ready:
        heading, paragraph = own_text((root / served_file(url, base)).read_bytes())
        indexed = letters(by_url[url])
        if letters(heading) not in indexed or letters(paragraph)[:80] not in indexed:
            missing.append((url.removeprefix(base), heading, paragraph[:60]))
    assert len(missing) <= (1 - MIN_OWN_TEXT_SHARE) * len(ready), missing[:5]

    pages = [page_text((root / served_file(url, base)).read_bytes()) for url in ready]
    for chrome in CHROME[name]:
        on_pages = sum(chrome in page for page in pages)
        assert on_pages >= 0.5 * len(pages), f"{chrome!r} is not on most pages of {name} any more"
        in_chunks = [c["url"] for c in chunks if chrome in c["text"].replace("\\", "")]
        assert len(in_chunks) <= MAX_CHROME_SHARE * len(chunks), (chrome, len(in_chunks), len(chunks))


@pytest.mark.parametrize("name", corpora.NAMES)
def test_the_benchmark_question_sets_point_at_pages_of_their_corpus(name: str) -> None:
    folder = Path(__file__).parent.parent / "bench" / "corpora" / name
    questions = [json.loads(line) for line in (folder / "questions.jsonl").read_text("utf-8").splitlines() if line]
    offtopic = [json.loads(line) for line in (folder / "offtopic.jsonl").read_text("utf-8").splitlines() if line]
    shipped = set(corpora.pages(name))
    assert len(questions) >= 30 and len({q["question"] for q in questions}) == len(questions)
    assert all(q["expected"] and set(q["expected"]) <= shipped for q in questions), \
        [q for q in questions if not set(q["expected"]) <= shipped]
    assert offtopic and all(q["question"] and q["expected"] == [] for q in offtopic)
