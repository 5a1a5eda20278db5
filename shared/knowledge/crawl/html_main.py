"""Real-world HTML: which charset governs a page, and which part of it is the content.

Generated documentation (Sphinx, DocBook, Publican, texinfo, javadoc, Doxygen, MkDocs, Docusaurus) repeats
a navigation bar, a sidebar and a footer on every page. Those are removed before extraction, trafilatura
then reads the page's main container, and when it keeps much less than that container says (link-dense
tables of contents, short reference pages) the container's own text is used instead: never the navigation."""

from __future__ import annotations

import codecs
import copy
import re
import threading
from typing import Any

XML_DECLARATION = re.compile(r"^\s*<\?xml\b[^>]*\?>", re.IGNORECASE)
XML_ENCODING = re.compile(rb"""^\s*<\?xml\b[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)""", re.IGNORECASE)
META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
# How far into a page its <meta charset> is looked for: the HTML standard says 1024 bytes, generated pages
# often put long comments or style blocks first.
PRESCAN_BYTES = 8192

# Navigation and chrome: elements, ARIA roles and class / id names of common documentation generators.
# Not <form>: ASP.NET and some CMSs wrap the whole page in one.
NAV_TAGS = ("nav", "script", "style", "noscript", "template", "button", "select", "iframe", "svg")
NAV_ROLES = ("navigation", "banner", "contentinfo", "search", "menubar", "toolbar")
NAV_CLASSES = (
    "navheader", "navfooter", "docnav",                               # DocBook XSL, Publican
    "sphinxsidebar", "related", "headerlink", "footer", "rst-versions", "wy-nav-side",  # Sphinx themes
    "navpath", "navbar", "topNav", "subNav", "bottomNav", "NavBarCell1", "NavBarCell2",  # Doxygen, javadoc
    "md-header", "md-sidebar", "md-footer", "md-tabs",              # MkDocs (Material)
    "theme-doc-sidebar-container", "pagination-nav", "theme-doc-breadcrumbs", "breadcrumbs", "breadcrumb",
    "skip-link", "skiplink", "sidebar-nav", "site-nav", "site-header", "site-footer", "menu-bar",
)
NAV_IDS = ("banner", "nav-tree", "side-nav", "nav-path", "MSearchBox", "MSearchSelectWindow", "MSearchResultsWindow",
           "sidebar", "navigation", "breadcrumbs", "header", "footer", "site-header", "site-footer")
# Doxygen's bar of section links ("Public Member Functions | ... | List of all members") above a class.
DOXYGEN_SUMMARY = "//div[@class='header']/div[@class='summary']"
# The page's main container, most specific first.
MAIN_XPATHS = ("//main", "//*[@role='main']", "//article", "//*[@itemprop='articleBody']",
               "//*[@id='content' or @id='main-content' or @id='main' or @id='doc-content']",
               "//div[contains(concat(' ', normalize-space(@class), ' '), ' body ')]")
HEADINGS = {f"h{n}": n for n in range(1, 7)}
BLOCKS = {"p", "div", "section", "article", "main", "table", "tr", "ul", "ol", "dl", "dt", "dd", "li",
          "blockquote", "figure", "figcaption", "br", "hr", "header", "footer", "aside", "center", "caption"}
HEADING_LINE = re.compile(r"^#{1,6} ", re.MULTILINE)
PUNCTUATION_ONLY = re.compile(r"^[\s\W_]*$")
# trafilatura keeping fewer than this share of the container's words or headings missed the content
# (it drops link-dense tables of contents, headings wrapped in links, DocBook title pages).
MIN_KEPT_SHARE = 0.5
# A paragraph of this many words is prose; trafilatura dropping more than this share of it missed content.
PROSE_WORDS = 12
MAX_MISSING_PROSE = 0.1
NOT_WORD = re.compile(r"[\W_]+")


def html_encoding(body: bytes, header_charset: str | None) -> str:
    """The charset a browser would use: a byte-order mark, then the HTTP header's charset, then the XML
    declaration, then <meta charset> / http-equiv; else UTF-8 when the bytes are valid UTF-8, else
    Windows-1252 (the web's default for undeclared pages)."""
    for bom, encoding in BOMS:
        if body.startswith(bom):
            return encoding
    head = body[:PRESCAN_BYTES]
    declared = [header_charset, _group(XML_ENCODING, head), _group(META_CHARSET, head)]
    for candidate in declared:
        if usable := _usable_encoding(candidate):
            return usable
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def _group(pattern: re.Pattern[bytes], data: bytes) -> str | None:
    match = pattern.search(data)
    return match.group(1).decode("ascii", "replace") if match else None


def _usable_encoding(name: str | None) -> str | None:
    """A Python codec for a declared charset; None for an unknown name or one that cannot be right for a
    page whose declaration we just read as ASCII (UTF-16/32 without a BOM). Latin-1 and ASCII mean
    Windows-1252 on the web, as in browsers."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None
    if codec.startswith(("utf-16", "utf-32")):
        return "utf-8"
    return "cp1252" if codec in ("latin-1", "iso8859-1", "ascii") else codec


def strip_xml_declaration(text: str) -> str:
    """The page without a leading `<?xml ...?>`: lxml refuses a str that declares an encoding, and the
    text is already decoded by then."""
    return XML_DECLARATION.sub("", text.removeprefix("\ufeff"), count=1)


# One page's tree work at a time per process. Ingest fetches pages on several threads; lxml.html.Element and
# trafilatura build elements through module-level parsers shared by those threads, and copying and moving such
# elements on two threads at once aborted the whole process once under `make test` (libxml2, no Python error).
# The work holds the GIL nearly throughout, so this costs the fetches' overlap nothing.
_TREE_WORK = threading.Lock()


def main_markdown(tree: Any, url: str, config: Any) -> str:
    """The page's content as markdown: trafilatura over the main container with navigation removed, or
    that container's text when trafilatura keeps too little of it."""
    with _TREE_WORK:
        return _main_markdown(tree, url, config)


def _main_markdown(tree: Any, url: str, config: Any) -> str:
    import lxml.html

    cleaned = copy.deepcopy(tree)
    remove_navigation(cleaned)
    container = main_container(cleaned)
    own = element_markdown(container)
    title = cleaned.find(".//title")
    page = lxml.html.Element("html")
    if title is not None:
        head = lxml.html.Element("head")
        head.append(copy.deepcopy(title))
        page.append(head)
    body = lxml.html.Element("body")
    body.append(copy.deepcopy(container) if container.tag != "body" else _children_wrapper(container))
    page.append(body)
    extracted = _trafilatura(page, url, config)
    if not own.strip() and not extracted.strip():  # everything sat in what looked like navigation
        return _trafilatura(copy.deepcopy(tree), url, config)
    return extracted if _keeps_content(extracted, own) else own


def _keeps_content(extracted: str, own: str) -> bool:
    """trafilatura's text holds the container's prose paragraphs and most of its headings."""
    if len(HEADING_LINE.findall(extracted)) < MIN_KEPT_SHARE * len(HEADING_LINE.findall(own)):
        return False
    found = _letters(extracted)
    prose = [p for p in own.split("\n\n") if len(p.split()) >= PROSE_WORDS and not p.startswith(("#", "- ", "```"))]
    total = sum(len(p.split()) for p in prose)
    missing = sum(len(p.split()) for p in prose if _letters(p)[:80] not in found)
    return missing <= MAX_MISSING_PROSE * total


def _letters(text: str) -> str:
    """Text reduced to lower-case letters and digits: markdown escapes and spacing do not matter."""
    return NOT_WORD.sub("", text.lower())


def _trafilatura(tree: Any, url: str, config: Any) -> str:
    """trafilatura's markdown of a tree it may change. Given a tree, not a string: trafilatura parses strings
    with one module-level lxml parser shared by every ingest thread (an abort inside that parse was seen once
    under concurrent ingest); our own parse uses lxml's per-thread default parser."""
    import trafilatura

    return trafilatura.extract(tree, url=url, output_format="markdown", include_tables=True, include_links=False,
                               include_comments=False, config=config) or ""


def _children_wrapper(body: Any) -> Any:
    import lxml.html

    wrapper = lxml.html.Element("div")
    wrapper.text = body.text
    for child in body:
        wrapper.append(copy.deepcopy(child))
    return wrapper


def remove_navigation(tree: Any) -> None:
    """Drop navigation, banners, footers, sidebars, scripts and link-only bars, in place. Header, footer and
    aside count as navigation only outside the page's article, where they frame the site, not the text."""
    doomed = list(tree.iter(*NAV_TAGS))
    for element in tree.iter("header", "footer", "aside"):
        if not any(a.tag in ("article", "main") or a.get("role") == "main" for a in element.iterancestors()):
            doomed.append(element)
    roles = " or ".join(f"@role='{role}'" for role in NAV_ROLES)
    classes = " or ".join(f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')" for name in NAV_CLASSES)
    ids = " or ".join(f"@id='{name}'" for name in NAV_IDS)
    doomed += tree.xpath(f"//*[{roles} or {classes} or {ids}]")
    doomed += tree.xpath(DOXYGEN_SUMMARY)
    doomed += [table for table in tree.iter("table") if _links_only(table)]
    for element in doomed:
        if element.getparent() is not None and element.tag not in ("html", "body"):
            _drop(element)


def _drop(element: Any) -> None:
    """Remove an element but keep its tail text (it belongs to the parent)."""
    parent = element.getparent()
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def _links_only(element: Any) -> bool:
    """A bar of links: every word in it is link text ("[ << ] [ >> ] [Top] [Contents]")."""
    links = element.xpath(".//a[@href]")
    if not links or len(links) > 30:
        return False
    text = element.text_content()
    for link in links:
        text = text.replace(link.text_content(), " ", 1)
    return bool(PUNCTUATION_ONLY.match(text))


def main_container(tree: Any) -> Any:
    """The element holding the page's content: <main>, role=main, <article>, #content and the like (the
    first that has text), else <body>."""
    for xpath in MAIN_XPATHS:
        for element in tree.xpath(xpath):
            if len(element.text_content().split()) >= 5:
                return element
    body = tree.find(".//body")
    return body if body is not None else tree


def element_markdown(element: Any) -> str:
    """The text of an element as simple markdown: headings as #-lines, code blocks fenced, list items as
    `- `, other blocks as paragraphs."""
    parts: list[str] = []
    _walk(element, parts)
    lines = [" ".join(line.split()) if not line.startswith("\x00") else line[1:]
             for line in "".join(parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _walk(element: Any, parts: list[str]) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""
    if not tag:  # a comment or processing instruction: only its tail is text
        return
    tag = tag.rsplit("}", 1)[-1].lower()
    if tag in HEADINGS:
        text = " ".join(element.text_content().split())
        if text:
            parts.append(f"\n\n{'#' * HEADINGS[tag]} {text}\n\n")
        return
    if tag == "pre":
        code = element.text_content().strip("\n")
        parts.append("\n\n```\n" + "\n".join("\x00" + line for line in code.split("\n")) + "\n```\n\n")
        return
    if tag in BLOCKS:
        parts.append("\n\n- " if tag == "li" else "\n")
    if element.text:
        parts.append(element.text)
    for child in element:
        _walk(child, parts)
        if child.tail:
            parts.append(child.tail)
    if tag in BLOCKS:
        parts.append("\n")
    elif tag in ("td", "th"):
        parts.append(" ")
