"""Turn fetched bodies and uploaded files into (title, markdown): HTML via trafilatura (charset and main
content found by shared.knowledge.crawl.html_main), PDF via pypdf, DOCX via python-docx, text and markdown as they
are. Parsers load on first use (they cost import time).

Files from outside (every upload but plain text, every crawled PDF) are parsed in a bounded child process
(shared.knowledge.crawl.sandbox): the parsers below check the decompressed size and page count themselves, the
child's memory cap and timeout stop whatever those checks cannot foresee."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import PurePosixPath
from urllib.parse import urljoin, urlsplit, urlunsplit

from shared.knowledge.crawl import CrawlError, Page
from shared.knowledge.crawl.sandbox import ParseLimitError, ParseLimits

# Upload kinds by file extension; the content type a browser sends is too often wrong to decide alone.
FILE_KINDS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
              ".htm": "html", ".pdf": "pdf", ".docx": "docx"}
HEADING_STYLE = re.compile(r"^heading (\d)$", re.IGNORECASE)


def to_page(kind: str, body: bytes, url: str, charset: str | None = None) -> Page:
    """A fetched body of `kind` (html, text, markdown, pdf) as a Page."""
    if kind == "html":
        return html_page(body, url, charset)
    if kind == "pdf":
        title, text = parse_bounded("pdf", body)
        return Page(url=url, title=title or _name_from_url(url), markdown=text)
    text = decode_text(body, charset)
    return Page(url=url, title=_markdown_title(text) or _name_from_url(url), markdown=text)


def html_page(html: str | bytes, url: str, charset: str | None = None) -> Page:
    """Main content as markdown (headings kept), the title, and the page's absolute http(s) links.

    `html` is best given as the fetched bytes with the charset of the HTTP header: the page's own XML
    declaration or <meta> then decides the rest (see html_text)."""
    import lxml.html

    from shared.knowledge.crawl import html_main

    text = html_text(html, charset) if isinstance(html, bytes) else html_main.strip_xml_declaration(html)
    if not text.strip():
        return Page(url=url, title=_name_from_url(url), markdown="")
    try:
        tree = lxml.html.fromstring(text)
    except (ValueError, lxml.etree.ParserError) as exc:
        raise CrawlError("unreadable_page", f"{url} is not readable HTML ({type(exc).__name__}).") from None
    base = (tree.xpath("string(//base/@href)") or "").strip()
    base = urljoin(url, base) if base else url
    links = _links(tree, base)
    title = _html_title(tree) or _name_from_url(url)
    return Page(url=url, title=title, markdown=html_main.main_markdown(tree, url, _trafilatura_config()),
                links=links)


def html_text(body: bytes, charset: str | None = None) -> str:
    """An HTML body as text, in the charset that governs it (see html_main.html_encoding), without an XML
    declaration: lxml refuses a str that still declares an encoding. Refuses binary data."""
    from shared.knowledge.crawl import html_main

    text = body.decode(html_main.html_encoding(body, charset), "replace").removeprefix("\ufeff")
    if "\x00" in text[:8192]:
        raise CrawlError("unreadable_file", "The content is binary, not text.")
    return html_main.strip_xml_declaration(text)


@lru_cache(maxsize=1)
def _trafilatura_config():  # type: ignore[no-untyped-def]
    from trafilatura.settings import use_config

    config = use_config()
    # The default (250 characters) sends short pages such as a one-answer FAQ to a fallback that keeps
    # the navigation and drops the headings; knowledge pages are often that short.
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", "25")
    return config


def _html_title(tree) -> str:  # type: ignore[no-untyped-def]
    for xpath in ("string(//meta[@property='og:title']/@content)", "string(//title)", "string(//h1)"):
        text = " ".join(str(tree.xpath(xpath)).split())
        if text:
            return text[:300]
    return ""


def _links(tree, base: str) -> list[str]:  # type: ignore[no-untyped-def]
    found: list[str] = []
    seen: set[str] = set()
    for href in tree.xpath("//a[@href]/@href"):
        href = str(href).strip()
        if not href or href.startswith(("#", "mailto:", "tel:", "javascript:")):
            continue
        absolute = urljoin(base, href)
        parts = urlsplit(absolute)
        if parts.scheme not in ("http", "https"):
            continue
        clean = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))
        if clean not in seen:
            seen.add(clean)
            found.append(clean)
    return found


def parse_bounded(kind: str, data: bytes, **args: str) -> tuple[str, str]:
    """(title, markdown) from the parser for `kind` in BOUNDED_PARSERS, run in a bounded child process."""
    from shared.knowledge.crawl import sandbox

    result = sandbox.run(kind, data, args)
    return str(result.get("title") or "")[:300], str(result.get("markdown") or "")


def pdf_text(data: bytes, limits: ParseLimits) -> tuple[str, str]:
    """(title, text) of a PDF; CrawlError unreadable_file when it is broken or encrypted, ParseLimitError
    when it has more pages than allowed or its text is larger than the decompressed-size limit."""
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise CrawlError("unreadable_file", "The PDF is encrypted; upload an unprotected copy.")
        if len(reader.pages) > limits.max_pages:
            raise ParseLimitError("too_many_pages", f"The PDF has {len(reader.pages):,} pages; the limit is "
                                                    f"{limits.max_pages:,} (PARSE_MAX_PAGES).",
                                  setting="PARSE_MAX_PAGES", limit=limits.max_pages)
        pages, size = [], 0
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            size += len(text.encode("utf-8", "replace"))
            if size > limits.max_decompressed_bytes:
                raise _decompressed_error("The text of the PDF", size, limits)
            pages.append(text)
        title = str((reader.metadata.get("/Title") if reader.metadata else None) or "").strip()
    except (CrawlError, MemoryError):
        raise
    except Exception as exc:  # pypdf raises many types for broken files
        raise CrawlError("unreadable_file", f"The PDF could not be read ({type(exc).__name__}).") from None
    return title[:300], "\n\n".join(p for p in pages if p)


def check_zip(data: bytes, limits: ParseLimits) -> None:
    """Refuse a .docx whose parts unpack to more than the limit, before any XML is read. The declared sizes
    are enough: zipfile never inflates a member past its declared size (it fails the CRC instead)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            size = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise CrawlError("unreadable_file", "The Word document is not a valid .docx (zip) file.") from None
    if size > limits.max_decompressed_bytes:
        raise _decompressed_error("The Word document", size, limits)


def _decompressed_error(what: str, size: int, limits: ParseLimits) -> ParseLimitError:
    return ParseLimitError("decompressed_too_large", f"{what} unpacks to more than {limits.max_decompressed_bytes:,} "
                                                     f"bytes ({size:,}; PARSE_MAX_DECOMPRESSED_BYTES).",
                           setting="PARSE_MAX_DECOMPRESSED_BYTES", limit=limits.max_decompressed_bytes)


def docx_markdown(data: bytes, limits: ParseLimits) -> tuple[str, str]:
    """(title, markdown) of a Word document: heading styles become #-headings, tables become rows."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        for child in document.element.body.iterchildren():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "p":
                lines.append(_docx_paragraph(Paragraph(child, document)))
            elif tag == "tbl":
                for row in Table(child, document).rows:
                    lines.append("| " + " | ".join(" ".join(c.text.split()) for c in row.cells) + " |")
                lines.append("")
        title = (document.core_properties.title or "").strip()
    except MemoryError:
        raise
    except Exception as exc:  # a zip that is not a docx, a corrupt part, ...
        raise CrawlError("unreadable_file", f"The Word document could not be read ({type(exc).__name__}).") from None
    markdown = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return title[:300], markdown


def html_file(data: bytes, limits: ParseLimits, url: str) -> tuple[str, str]:
    """(title, markdown) of an uploaded HTML file."""
    page = html_page(data, url)
    return page.title, page.markdown


# What the sandbox child may run: (data, limits, **args) -> (title, markdown).
BOUNDED_PARSERS: dict[str, Callable[..., tuple[str, str]]] = {"pdf": pdf_text, "docx": docx_markdown, "html": html_file}


def _docx_paragraph(paragraph) -> str:  # type: ignore[no-untyped-def]
    text = paragraph.text.strip()
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if not text:
        return ""
    if style.lower() == "title":
        return f"# {text}\n"
    if match := HEADING_STYLE.match(style):
        return "#" * min(6, max(1, int(match.group(1)))) + f" {text}\n"
    if style.lower().startswith("list"):
        return f"- {text}"
    return text + "\n"


def parse_file(filename: str, data: bytes) -> tuple[str, str, str]:
    """(kind, title, markdown) of an uploaded file; CrawlError with code unsupported_file_type,
    unreadable_file or empty_file (the API answers 415 / 422), ParseLimitError past a parse bound
    (413 / 422). PDF, Word and HTML files are parsed in a bounded child process."""
    suffix = PurePosixPath(filename.lower()).suffix
    kind = FILE_KINDS.get(suffix)
    if kind is None:
        raise CrawlError("unsupported_file_type",
                         f"{suffix or 'Files without an extension'} is not supported; upload "
                         + ", ".join(sorted(set(FILE_KINDS))) + ".")
    stem = PurePosixPath(filename).stem[:300]
    if kind == "pdf":
        if not data.lstrip()[:5].startswith(b"%PDF"):
            raise CrawlError("unreadable_file", "The file is not a PDF (its content does not start with %PDF).")
        title, markdown = parse_bounded("pdf", data)
    elif kind == "docx":
        if not data.startswith(b"PK"):
            raise CrawlError("unreadable_file", "The file is not a Word .docx document.")
        check_zip(data, ParseLimits.from_settings())  # a zip bomb is refused here, before a child starts
        title, markdown = parse_bounded("docx", data)
    elif kind == "html":
        title, markdown = parse_bounded("html", data, url=f"file:///{filename}")
    else:
        markdown = decode_text(data)
        title = _markdown_title(markdown) if kind == "markdown" else ""
    if not markdown.strip():
        raise CrawlError("empty_file", "No text could be extracted from the file (a scanned PDF needs OCR first).")
    return kind, (title or stem), markdown


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Bytes as text: BOM, then the declared charset, then UTF-8, then Windows-1252; refuses binary data."""
    if data.startswith(b"\xef\xbb\xbf"):
        text = data[3:].decode("utf-8", "replace")
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", "replace")
    else:
        text = ""
        for encoding in (charset, "utf-8", "cp1252"):
            if not encoding:
                continue
            try:
                text = data.decode(encoding)
                break
            except (LookupError, UnicodeDecodeError):
                continue
        else:
            text = data.decode("utf-8", "replace")
    if "\x00" in text[:8192]:
        raise CrawlError("unreadable_file", "The content is binary, not text.")
    return text


def _markdown_title(text: str) -> str:
    match = re.search(r"^#\s+(.+?)\s*#*\s*$", text[:5000], re.MULTILINE)
    return match.group(1).strip()[:300] if match else ""


def _name_from_url(url: str) -> str:
    parts = urlsplit(url)
    name = PurePosixPath(parts.path).name or parts.netloc
    return name[:300]
