"""write_html: a report.md and the files it links, as one self-contained report.html beside it.

    write_html(run_dir / "report.md") -> run_dir / "report.html"

Works on any Markdown report with relative links (the run report, a sweep report): images
`![alt](figures/x.png)`, links `[name](tables/x.md)` and GitHub-style pipe tables. The page loads
nothing from anywhere, so it reads offline in any browser and can be handed in as one file:

- an image is embedded as a base64 data: URI; an image from a URL is not loaded;
- a linked Markdown table (a .md file that starts with `|`) is rendered in an appendix, and the
  link points to its anchor; a link to another Markdown document points to its .html beside it,
  when there is one;
- a link to any other local file (csv, tex, pdf, a shown figure's png) becomes a data: URI
  download, or the anchor of the figure when the page shows it;
- a missing file leaves a visible note, "missing: figures/x.png", instead of failing;
- raw HTML in the Markdown is shown as text, not interpreted (names may contain `<`).

The same report.md and files give the same bytes, like the rest of the report.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree as ET

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from PIL import Image

from hallucue_mlx import atomic

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
FILE_TYPES = {
    ".csv": "text/csv",
    ".tex": "application/x-tex",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".txt": "text/plain",
    ".md": "text/markdown",
}
# A cell that reads as a number: 48.0, +10.0 [6.0, 14.0], -2.5, (3), 58.0 / 46.0
NUMERIC = re.compile(r"^[-+−(]*\d")
EMPTY_CELLS = {"", "—", "–", "-", "n/a", "NA"}
CSS_DPI = 96  # CSS pixels per inch: a figure saved at 150 dpi shows at 96/150 of its pixels
# A file larger than this is linked, not embedded (a report's figures and tables are ~100 KB).
MAX_EMBED_BYTES = 32 * 2**20
EXTENSIONS = ["tables", "sane_lists", "toc"]
# The browser itself refuses any fetch: images only from data: URIs, styles only inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #1b1b1b; background: #fff; max-width: 1200px; margin: 2rem auto; padding: 0 1.25rem; }
main > p, main > ul, main > ol { max-width: 62rem; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #d0d0d0; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #e2e2e2; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
code { font: .88em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f2f2f2;
  padding: 0 .25em; border-radius: 3px; }
a { color: #0b57d0; }
.table-wrap { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: .88rem; }
th, td { border: 1px solid #c4c4c4; padding: .28rem .55rem; vertical-align: top; text-align: left;
  font-variant-numeric: tabular-nums; }
th { min-width: 4rem; }
td:nth-child(-n+2), th:nth-child(-n+2) { white-space: nowrap; }
blockquote { margin: 1rem 0; padding: .6rem 1rem; background: #fff8e1; border-left: 4px solid #e0a800;
  max-width: 62rem; }
blockquote p { margin: 0; }
details { margin: .4rem 0 1rem; } summary { cursor: pointer; color: #444; }
thead th { background: #eef0f3; vertical-align: bottom; }
tbody tr:nth-child(even) { background: #f8f9fa; }
img { display: block; max-width: 100%; height: auto; margin: 1rem 0; }
.missing { color: #9b1c1c; background: #fdf0f0; border: 1px dashed #9b1c1c; padding: 0 .35rem;
  font-weight: 600; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10.5pt; }
  h1, h2, h3 { break-after: avoid; }
  table, img, tr { break-inside: avoid; }
  .table-wrap { overflow: visible; }
  table { font-size: 8.5pt; }
  td[style*="right"] { white-space: normal; }
  a { color: inherit; text-decoration: none; }
  thead th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
""".strip()


@dataclass
class _State:
    """What the conversion of one page collects: the tables for the appendix, the figure anchors."""

    root: Path  # the report's folder: appendix names are relative to it
    appendix: dict[Path, tuple[str, str]] = field(default_factory=dict)  # file -> (name, id)
    figure_ids: dict[Path, str] = field(default_factory=dict)  # embedded image file -> its id
    used_ids: set[str] = field(default_factory=lambda: {"appendix-tables"})  # the section's own

    def name(self, path: Path) -> str:
        """The path as the page shows it: relative to the report's folder where it can be."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    def anchor(self, prefix: str, path: Path) -> str:
        """A new element id for a file, readable and unique in the page: appendix-tables-x-md."""
        base = prefix + "-" + re.sub(r"[^A-Za-z0-9_-]+", "-", self.name(path)).strip("-").lower()
        found, n = base, 1
        while found in self.used_ids:
            n += 1
            found = f"{base}-{n}"
        self.used_ids.add(found)
        return found


def _local(ref: str, base: Path) -> Path | None:
    """The file a relative reference names; None for a URL, a data: URI or an in-page anchor."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return base / unquote(parts.path)


def _inside(path: Path, root: Path) -> bool:
    """Whether `path` (links resolved) lies inside the report's folder: only the report's own
    figures and tables are embedded, never a file a name in the data points at."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _data_uri(path: Path, mime: str) -> str | None:
    """path's bytes as a data: URI; None when the file is missing, unreadable or too large."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_EMBED_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _display_width(path: Path) -> int | None:
    """The width in CSS pixels at which an image shows at the size it was drawn, when it was
    saved at more than CSS_DPI (report figures: 150 dpi); None to show it pixel for pixel."""
    try:
        with Image.open(path) as im:
            width, dpi = im.width, im.info.get("dpi")
    except (OSError, ValueError):  # not an image PIL reads (an SVG): its own size
        return None
    if not dpi or float(dpi[0]) <= CSS_DPI:
        return None
    return round(width * CSS_DPI / float(dpi[0]))


def _is_table(path: Path) -> bool:
    """A Markdown file that is a pipe table (as tables/*.md are), not a whole document."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return text.lstrip().startswith("|")


def _note(el: ET.Element, text: str) -> None:
    """Turn el (an img or a link) into a visible note in place; its tail stays after it."""
    keep = list(el) if el.tag == "a" else []
    label = el.text if el.tag == "a" else None
    el.tag, el.text = "span", None
    el.attrib.clear()
    el[:] = []
    if label or keep:  # a link keeps its words before the note
        inner = ET.SubElement(el, "span")
        inner.text = label
        inner.extend(keep)
        inner.tail = " "
    note = ET.SubElement(el, "span", {"class": "missing"})
    note.text = text


def _embed_image(el: ET.Element, base: Path, state: _State) -> None:
    """src -> a data: URI, or a visible note when the file is missing or not an image."""
    src = el.get("src", "")
    if src.startswith("data:"):
        return
    path = _local(src, base)
    if path is None:
        _note(el, f"not embedded (an image from outside the report): {src}")
        return
    if not _inside(path, state.root):
        _note(el, f"not embedded (outside the report's folder): {src}")
        return
    mime = IMAGE_TYPES.get(path.suffix.lower())
    uri = _data_uri(path, mime) if mime else None
    if uri is None:
        why = "missing" if not path.is_file() else "not embedded"
        _note(el, f"{why}: {src}" + (f" ({el.get('alt')})" if el.get("alt") else ""))
        return
    el.set("src", uri)
    width = _display_width(path)
    if width:
        el.set("width", str(width))
    key = path.resolve()
    if key not in state.figure_ids:
        state.figure_ids[key] = state.anchor("figure", path)
        el.set("id", state.figure_ids[key])


def _rewrite_link(el: ET.Element, base: Path, state: _State) -> None:
    """A local href -> an in-page anchor, a sibling .html or a data: download; else a note."""
    href = el.get("href", "")
    path = _local(href, base)
    if path is None:
        return
    if not _inside(path, state.root):
        _note(el, f"not embedded (outside the report's folder): {href}")
        return
    if not path.is_file():
        _note(el, f"missing: {href}")
        return
    key = path.resolve()
    if key in state.figure_ids:
        el.set("href", "#" + state.figure_ids[key])
    elif path.suffix.lower() == ".md" and _is_table(path):
        if key not in state.appendix:
            state.appendix[key] = (state.name(path), state.anchor("appendix", path))
        el.set("href", "#" + state.appendix[key][1])
    elif path.suffix.lower() == ".md":
        if path.with_suffix(".html").is_file():
            el.set("href", urlsplit(href).path.removesuffix(".md") + ".html")
    else:
        suffix = path.suffix.lower()
        uri = _data_uri(path, IMAGE_TYPES.get(suffix) or FILE_TYPES.get(suffix, "text/plain"))
        if uri is None:
            _note(el, f"not embedded (over {MAX_EMBED_BYTES // 2**20} MiB): {href}")
            return
        el.set("href", uri)
        el.set("download", path.name)


def _align_columns(table: ET.Element) -> None:
    """Numbers right-aligned, words left-aligned, column by column (whatever the Markdown said)."""
    rows = [list(tr) for tr in table.iter("tr")]
    body = [r for r in rows if r and r[0].tag == "td"]
    for j in range(max((len(r) for r in rows), default=0)):
        texts = ["".join(r[j].itertext()).strip() for r in body if j < len(r)]
        values = [t for t in texts if t not in EMPTY_CELLS]
        numeric = bool(values) and all(NUMERIC.match(t) for t in values)
        for cell in (r[j] for r in rows if j < len(r)):
            if numeric:
                cell.set("style", "text-align: right;")
                _keep_intervals(cell)
            elif "right" in cell.get("style", ""):
                del cell.attrib["style"]


def _keep_intervals(cell: ET.Element) -> None:
    """No line break inside "[6.0, 14.0]" where a narrow page wraps a cell (print)."""
    for node in cell.iter():
        if node.text:
            node.text = node.text.replace(", ", ",\u00a0")
        if node is not cell and node.tail:
            node.tail = node.tail.replace(", ", ",\u00a0")


def _wrap_tables(root: ET.Element) -> None:
    """Each table in a div that scrolls sideways on a narrow screen instead of being cut."""
    for parent in list(root.iter()):
        for i, child in enumerate(list(parent)):
            if child.tag == "table":
                _align_columns(child)
                wrap = ET.Element("div", {"class": "table-wrap"})
                wrap.tail, child.tail = child.tail, None
                wrap.append(child)
                parent[i] = wrap


FOLD_PREFIX = "In detail:"  # an h3 starting so, and the list under it, fold into <details>


def _fold_details(root: ET.Element) -> None:
    """A `### In detail: ...` heading and the list after it become a collapsed <details> block
    (the reading's comparisons within noise: one click away, not a screenful)."""
    for parent in list(root.iter()):
        kids = list(parent)
        for i, child in enumerate(kids):
            text = "".join(child.itertext()).strip()
            if child.tag != "h3" or not text.startswith(FOLD_PREFIX) or i + 1 >= len(kids):
                continue
            body = kids[i + 1]
            if body.tag not in ("ul", "ol"):
                continue
            details = ET.Element("details")
            summary = ET.SubElement(details, "summary")
            summary.text = text.removeprefix(FOLD_PREFIX).strip()
            details.tail, body.tail = body.tail, None
            details.append(body)
            parent.remove(body)
            parent[list(parent).index(child)] = details


class _Embedder(Treeprocessor):
    """After inline parsing: images first (so links can point at shown figures), then links,
    then tables (aligned and wrapped)."""

    def __init__(self, md: markdown.Markdown, base: Path, state: _State) -> None:
        super().__init__(md)
        self.base, self.state = base, state

    def run(self, root: ET.Element) -> None:
        for el in list(root.iter("img")):
            _embed_image(el, self.base, self.state)
        for el in list(root.iter("a")):
            _rewrite_link(el, self.base, self.state)
        _wrap_tables(root)
        _fold_details(root)


class _EmbedExtension(Extension):
    """Markdown without raw HTML, and with _Embedder's rewrites of images, links and tables."""

    def __init__(self, base: Path, state: _State) -> None:
        super().__init__()
        self.base, self.state = base, state

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (markdown's API)
        # raw HTML is text: a name with `<` in it must show as written, not become markup
        md.preprocessors.deregister("html_block")
        for name in ("html", "autolink", "automail"):
            md.inlinePatterns.deregister(name)
        # after 'inline' (20) has made the img and a elements, before 'prettify' (10)
        md.treeprocessors.register(_Embedder(md, self.base, self.state), "embed", 15)


def _convert(text: str, base: Path, state: _State) -> str:
    """Markdown text whose relative links start at base -> an HTML fragment."""
    md = markdown.Markdown(extensions=[*EXTENSIONS, _EmbedExtension(base, state)])
    return md.convert(text)


def _appendix(state: _State) -> list[str]:
    """Every linked table, rendered under an anchor; tables they link join the queue."""
    if not state.appendix:
        return []
    parts = ['<h2 id="appendix-tables">Appendix: tables</h2>']
    done = 0
    while done < len(state.appendix):
        path, (name, anchor) = list(state.appendix.items())[done]
        done += 1
        parts.append(f'<h3 id="{anchor}"><code>{escape(name)}</code></h3>')
        parts.append(_convert(path.read_text(encoding="utf-8"), path.parent, state))
    return parts


def _title(text: str, fallback: str) -> str:
    """The first level-1 heading's text, or the file name."""
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip().replace("`", "")
    return fallback


def render_html(md_path: Path) -> str:
    """The self-contained HTML page of md_path (see the module's docstring)."""
    md_path = Path(md_path)
    text = md_path.read_text(encoding="utf-8")
    state = _State(root=md_path.parent)
    body = _convert(text, md_path.parent, state)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(_title(text, md_path.name))}</title>",
            f"<style>\n{STYLE}\n</style>",
            "</head>",
            "<body>",
            "<main>",
            body,
            *_appendix(state),
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write_html(md_path: Path) -> Path:
    """Write report.html beside md_path (same stem) from it and the files it links; its path."""
    md_path = Path(md_path)
    return atomic.write_text(md_path.with_suffix(".html"), render_html(md_path))


__all__ = ["render_html", "write_html"]
