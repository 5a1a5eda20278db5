"""Real-world HTML through the built-in crawler: XHTML with an XML declaration, charsets declared in the
header, the XML declaration or <meta> only, <base href>, and pages whose main content trafilatura misses
(the navigation around it must not be what gets indexed)."""

from __future__ import annotations

from tests import corpora
from tests.fakes.crawl_fixtures import add_source, chunk_rows, knowledge_setup, wait_synced

XHTML = """<?xml version="1.0" encoding="{charset}"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title></head>
<body><div class="navheader"><a href="prev.html">Zurück</a> | <a href="next.html">Weiter</a></div>
<div class="section"><h2>{title}</h2><p>{text}</p></div></body></html>"""


def crawl_one(engine, site, path: str, content_type: str, body: bytes, kind: str = "url") -> tuple[dict, str]:
    """Serve `body` at `path`, add it as a source, wait; (source, the indexed titles, headings and text)."""
    site.pages[path] = (content_type, body)
    client, _, assistant_id = knowledge_setup(engine)
    source = wait_synced(engine, client, add_source(client, assistant_id, kind=kind, url=f"{site.url}{path}")["id"])
    rows = chunk_rows(engine, source["id"])
    return source, "\n".join(f"{row['title']}\n{row['heading_path']}\n{row['text']}" for row in rows)


def test_an_xhtml_page_with_an_xml_declaration_is_read_in_its_declared_charset(engine, site) -> None:
    text = "Die Größe der Ebene lässt sich über das Menü »Ebene« ändern; Maße in Pixel."
    body = XHTML.format(charset="ISO-8859-1", title="Ebenengröße", text=text).encode("iso-8859-1")
    # application/xhtml+xml without a charset: only the XML declaration names ISO-8859-1.
    source, indexed = crawl_one(engine, site, "/manual/ebene.html", "application/xhtml+xml", body)
    assert source["status"] == "ready", source.get("error")
    assert text in indexed and "Ebenengröße" in indexed
    assert "Weiter" not in indexed  # the DocBook navigation bar is not content


def test_a_charset_named_only_in_the_pages_meta_tag_is_used(engine, site) -> None:
    text = "Документация описывает установку сервера и настройку резервного копирования."
    body = (f'<!DOCTYPE html><html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
            f"<title>Установка</title></head><body><main><h1>Установка</h1><p>{text}</p></main></body></html>"
            ).encode("cp1251")
    source, indexed = crawl_one(engine, site, "/ru/install.html", "text/html", body)
    assert source["status"] == "ready", source.get("error")
    assert text in indexed


def test_the_http_header_charset_wins_over_a_wrong_meta_tag(engine, site) -> None:
    text = "Çà et là : la qualité des données dépend du réglage « strict »."
    body = (f'<html><head><meta charset="utf-8"><title>Réglages</title></head><body><article><h1>Réglages</h1>'
            f"<p>{text}</p></article></body></html>").encode("iso-8859-15")
    source, indexed = crawl_one(engine, site, "/fr/reglages.html", "text/html; charset=ISO-8859-15", body)
    assert source["status"] == "ready", source.get("error")
    assert text in indexed


def test_links_resolve_against_base_href_in_an_xhtml_page(engine, site) -> None:
    page = XHTML.format(charset="UTF-8", title="Start", text="See the <a href='install.html'>installation</a>.")
    page = page.replace("<head>", '<head><base href="/docs/v2/"/>')
    site.pages["/docs/v2/install.html"] = ("text/html", "<html><head><title>Install v2</title></head><body><main>"
                                                        "<h1>Install v2</h1><p>Version two installs with one "
                                                        "command and no reboot.</p></main></body></html>")
    site.pages["/docs/install.html"] = ("text/html", "<html><body><p>wrong page, base ignored</p></body></html>")
    source, indexed = crawl_one(engine, site, "/docs/index.html", "text/html", page.encode(), kind="site")
    assert source["status"] == "ready", source.get("error")
    assert "installs with one command" in indexed and "wrong page" not in indexed
    assert site.hits["/docs/install.html"] == 0


NAV_MENU = "".join(f'<li><a href="/topic-{n}.html">Configuration topic number {n} overview</a></li>' for n in range(40))


def test_a_short_reference_page_indexes_its_main_text_not_the_menu(engine, site) -> None:
    # A generated reference page: a long menu in a sidebar, a short description in the page's main element.
    body = (f"<html><head><title>cache_size</title></head><body><header><a href='/'>Home</a></header>"
            f"<div class='wrapper'><div class='menu'><ul>{NAV_MENU}</ul></div>"
            f"<div role='main'><h1>cache_size</h1><p>Sets the <a href='/memory.html'>memory</a> used for the "
            f"page cache, in megabytes.</p><p>Default: <code>64</code>.</p></div></div>"
            f"<footer>© Example project</footer></body></html>")
    source, indexed = crawl_one(engine, site, "/ref/cache_size.html", "text/html", body.encode())
    assert source["status"] == "ready", source.get("error")
    assert "memory used for the page cache, in megabytes" in " ".join(indexed.split())
    assert "Configuration topic number" not in indexed and "Example project" not in indexed


def test_a_chapter_introduction_trafilatura_drops_is_kept(engine, site) -> None:
    # The real Debian Administrator's Handbook chapter on APT (Publican / DocBook): its title and introduction
    # sit before the first section, in markup trafilatura treats as boilerplate; the introduction holds the
    # answer to "what does APT stand for?". The XML declaration is removed here to test only this.
    page = (corpora.extract("debian-handbook") / "apt.html").read_text("utf-8")
    body = page[page.index("?>") + 2:].encode()
    source, indexed = crawl_one(engine, site, "/handbook/apt.html", "text/html", body)
    assert source["status"] == "ready", source.get("error")
    flat = " ".join(indexed.split())
    assert "APT is the abbreviation for Advanced Packaging Tool" in flat
    assert "6.1. Filling in the sources.list File" in flat
    assert "Download the ebook" not in flat  # the site banner


def test_a_texinfo_navigation_bar_is_not_indexed_and_headings_are_kept(engine, site) -> None:
    # The real GNU gettext manual (texi2html): every page opens with a table of [ << ] [ >> ] [Top]
    # [Contents] [Index] links that trafilatura keeps as a table, and its headings are links it drops.
    body = (corpora.extract("gettext") / "gettext_5.html").read_bytes()
    source, _ = crawl_one(engine, site, "/gettext/gettext_5.html", "text/html; charset=utf-8", body)
    assert source["status"] == "ready", source.get("error")
    rows = chunk_rows(engine, source["id"])
    assert not [row["text"] for row in rows if "Contents" in row["text"] and "Top" in row["text"]]
    headings = {row["heading_path"] for row in rows}
    assert any("5.1 Invoking the xgettext Program" in heading for heading in headings), headings
    assert any("Making the PO Template File" in heading for heading in headings), headings


def test_a_page_wrapped_in_one_form_is_still_read(engine, site) -> None:
    # ASP.NET Web Forms pages put the whole body in a single <form>; it is not navigation.
    text = "Opening hours of the town library are Monday to Friday from nine to six."
    body = (f"<html><head><title>Library</title></head><body><form id='form1' method='post'><nav><a href='/'>Home</a>"
            f"</nav><div id='content'><h1>Library</h1><p>{text}</p></div></form></body></html>")
    source, indexed = crawl_one(engine, site, "/library.aspx", "text/html; charset=utf-8", body.encode())
    assert source["status"] == "ready", source.get("error")
    assert text in indexed
