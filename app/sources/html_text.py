"""Mastodon's post HTML as the plain text a person reads, with a real HTML parser.

A Mastodon status's `content` is HTML: `<p>` paragraphs, `<br>` line breaks, links whose long URLs
are shortened with `<span class="invisible">` parts (and an `ellipsis` part that Mastodon's CSS
ends with "…"), mention and hashtag links (`@<span>helen</span>`), and, since 4.4, a
`<p class="quote-inline">RE: …</p>` fallback line in quote posts that Mastodon hides. Remote
servers may send other markup, and a hostile one anything at all.

`html_to_text` keeps only the text: paragraphs become a blank line, `<br>` and other blocks a line
break, links their text as Mastodon shows it, entities are decoded (`&lt;script&gt;` is the text
`<script>`), and every tag, comment and attribute is dropped, scripts and styles with their content.
The result is text, never markup: pages must still render it as text.
"""

from __future__ import annotations

from html.parser import HTMLParser

# Elements whose content is never text a person reads.
_DROPPED = frozenset(
    {"script", "style", "template", "noscript", "iframe", "object", "svg", "math", "head", "title"}
)
# Elements that never have content (and so no end tag to wait for).
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
# Paragraph-like elements: a blank line before and after.
_PARAGRAPHS = frozenset({"p", "blockquote"})
# Other blocks: a line break before and after.
_BLOCKS = frozenset(
    {
        "div",
        "li",
        "ul",
        "ol",
        "pre",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "table",
        "dl",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "figure",
        "figcaption",
        "hr",
    }
)
# Classes whose content Mastodon hides: the cut parts of a shortened URL, a quote's fallback line.
_HIDDEN_CLASSES = frozenset({"invisible", "quote-inline"})
ELLIPSIS = "…"


class _Element:
    __slots__ = ("ellipsis", "hidden", "tag")

    def __init__(self, tag: str, hidden: bool, ellipsis: bool) -> None:
        self.tag = tag
        self.hidden = hidden
        self.ellipsis = ellipsis


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._open: list[_Element] = []
        self._dropping = 0  # depth inside dropped elements
        self._pre = 0  # depth inside <pre>: whitespace is kept
        self._parts: list[str] = []
        self._breaks = 0  # line breaks owed before the next text
        self._space = False  # a space owed before the next text
        self._line_has_text = False

    # -- tags ---------------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if tag in _DROPPED:
            self._dropping += 1
            return
        if self._dropping:
            return
        if tag == "br":
            self._line_break(1, add=True)
            return
        self._block_edge(tag)
        if tag in _VOID:
            return
        classes = set()
        for name, value in attrs:
            if name.lower() == "class" and value:
                classes.update(value.split())
        hidden = self._hidden() or bool(classes & _HIDDEN_CLASSES)
        self._open.append(_Element(tag, hidden, "ellipsis" in classes))
        if tag == "pre":
            self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if self._dropping:
            return
        if tag == "br":
            self._line_break(1, add=True)
        elif tag not in _DROPPED:
            # `<p/>` and the like open nothing: only their edge counts.
            self._block_edge(tag)

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if tag in _DROPPED:
            self._dropping = max(0, self._dropping - 1)
            return
        if self._dropping:
            return
        if tag == "br":  # `</br>` is read as `<br>` by browsers
            self._line_break(1, add=True)
            return
        # Close the innermost open element of that name and whatever was left open inside it; an
        # end tag that closes nothing is ignored.
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                for element in reversed(self._open[index:]):
                    self._close(element)
                del self._open[index:]
                break
        self._block_edge(tag)

    def _close(self, element: _Element) -> None:
        if element.tag == "pre":
            self._pre = max(0, self._pre - 1)
        if element.ellipsis and not element.hidden and not self._dropping:
            self._text(ELLIPSIS, join=True)

    def _hidden(self) -> bool:
        return bool(self._open) and self._open[-1].hidden

    def _block_edge(self, tag: str) -> None:
        if tag in _PARAGRAPHS:
            self._line_break(2)
        elif tag in _BLOCKS:
            self._line_break(1)

    # -- text ---------------------------------------------------------------------------------

    def handle_data(self, data: str) -> None:
        if self._dropping or self._hidden() or not data:
            return
        if self._pre:
            lines = data.split("\n")
            for index, line in enumerate(lines):
                if index:
                    self._line_break(1, add=True)
                if line:
                    self._text(line, join=True)
            return
        words = data.split()
        if not words:
            self._space = self._space or self._line_has_text
            return
        if data[0].isspace():
            self._space = True
        self._text(" ".join(words))
        self._space = data[-1].isspace()

    def _text(self, text: str, *, join: bool = False) -> None:
        if self._breaks and self._parts:
            self._parts.append("\n" * self._breaks)
            self._line_has_text = False
            self._space = False
        elif self._space and self._line_has_text and not join:
            self._parts.append(" ")
        self._breaks = 0
        self._space = False
        self._parts.append(text)
        self._line_has_text = True

    def _line_break(self, count: int, *, add: bool = False) -> None:
        """Owe `count` line breaks before the next text (`add`: on top of those owed, for
        `<br>`; otherwise at least that many, so that block edges do not pile up)."""
        if not self._parts:
            return  # nothing before: no leading blank lines
        self._breaks = self._breaks + count if add else max(self._breaks, count)
        self._space = False

    def handle_comment(self, data: str) -> None:
        return None

    def handle_decl(self, decl: str) -> None:
        return None

    def handle_pi(self, data: str) -> None:
        return None

    def unknown_decl(self, data: str) -> None:
        return None

    def close(self) -> None:
        # Input that ends inside a tag (`<a href="...` cut short) would come out as text: it is
        # markup, drop it. Input ending in text or an entity is kept.
        rest = self.rawdata
        if rest.startswith("<") and len(rest) > 1 and (rest[1].isalpha() or rest[1] in "/!?"):
            self.rawdata = ""
        super().close()

    def text(self) -> str:
        return "".join(self._parts)


def html_to_text(html: str) -> str:
    """The text of an HTML fragment, as Mastodon shows it (see the module's docstring)."""
    if not html:
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()
