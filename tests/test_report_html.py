"""report.html: report.md with every figure and table in one file that loads nothing from outside."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fake_run import make_fake_run
from PIL import Image
from typer.testing import CliRunner

from hallucue_mlx.cli import app
from hallucue_mlx.report import write_html, write_report

IMAGE_REF = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
TABLE_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((tables/[^)\s]+\.md)\)")
FILE_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(((?:tables|figures)/[^)\s]+\.(?:csv|tex|pdf))\)")


class Page(HTMLParser):
    """What a reader gets from a page: images, links (with their words as "text"), ids, each
    table's header and body cells, the visible text, and the notes marked as missing."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs: list[dict[str, str]] = []
        self.links: list[dict[str, str]] = []
        self.ids: set[str] = set()
        self.tables: list[dict[str, list]] = []
        self.text: list[str] = []
        self.notes: list[str] = []
        self._cell: list[str] | None = None
        self._note: list[str] | None = None
        self._link: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)
        elif tag == "a":
            self.links.append(a)
            self._link = []
        elif tag == "table":
            self.tables.append({"head": [], "body": []})
        elif tag in ("th", "td"):
            self._cell = []
            self.tables[-1]["head" if tag == "th" else "body"].append((self._cell, a))
        elif "missing" in a.get("class", "").split():
            self._note = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._cell = None
        elif tag == "a" and self._link is not None:
            self.links[-1]["text"] = "".join(self._link)
            self._link = None
        elif tag == "span" and self._note is not None:
            self.notes.append("".join(self._note))
            self._note = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for sink in (self._cell, self._note, self._link):
            if sink is not None:
                sink.append(data)

    def headers(self) -> list[list[str]]:
        return [["".join(c).strip() for c, _ in t["head"]] for t in self.tables]


def md_header(path: Path) -> list[str]:
    """A Markdown table's header cells, read from its first line."""
    first = path.read_text().splitlines()[0]
    return [c.strip() for c in first.strip().strip("|").split("|")]


def data_bytes(uri: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert uri.startswith(prefix), uri[:60]
    return base64.b64decode(uri[len(prefix) :], validate=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    run = make_fake_run(
        tmp_path_factory.mktemp("html") / "run",
        n_test={"synth": 60, "mathvista": 40},
        n_train=20,
        steps=8,
    )
    md_path = write_report(run)
    assert md_path == run / "report.md"  # write_report still returns report.md's path
    return run, md_path.read_text(), (run / "report.html").read_text(encoding="utf-8")


def test_html_loads_nothing_from_outside(built: tuple[Path, str, str]) -> None:
    run, _, html = built
    assert html.startswith("<!DOCTYPE html>")
    for bad in ('src="http', "src='http", "<link", "<script", "@import", "url("):
        assert bad not in html, bad
    page = Page(html)
    assert page.imgs and all(img["src"].startswith("data:image/png;base64,") for img in page.imgs)
    # every link is an in-page anchor, a data: download or a URL the reader may follow
    for a in page.links:
        assert a["href"].startswith(("#", "data:", "http://", "https://")), a["href"]
    assert "default-src 'none'" in html  # the browser refuses any load the page might still name


def test_every_figure_is_embedded_byte_for_byte(built: tuple[Path, str, str]) -> None:
    run, md, html = built
    refs = IMAGE_REF.findall(md)
    assert len(refs) >= 4  # gains, matrix, versions-synth, training curves
    imgs = Page(html).imgs
    assert len(imgs) == len(refs)
    for (alt, src), img in zip(refs, imgs):
        assert img["alt"] == alt
        assert data_bytes(img["src"], "image/png") == (run / src).read_bytes(), src
        # shown at the size it was drawn (saved at 150 dpi), not one screen pixel per pixel
        assert abs(int(img["width"]) - Image.open(run / src).width * 96 / 150) <= 1, src


def test_every_linked_table_is_rendered(built: tuple[Path, str, str]) -> None:
    run, md, html = built
    page = Page(html)
    links = TABLE_LINK.findall(md)
    assert {Path(p).name for p in links} >= {"table1.md", "matrix.md", "diagnostics.md"}
    hrefs = {a.get("download") or a["href"] for a in page.links}
    headers = page.headers()
    for rel in links:
        header = md_header(run / rel)
        assert header in headers, rel  # rendered as an HTML table, header cells and all
        [anchor] = {a["href"] for a in page.links if a.get("text") == Path(rel).name}
        assert anchor.startswith("#") and anchor[1:] in page.ids, rel  # the link leads to it
    # inline tables are HTML tables too: no Markdown pipe row is left in the page
    assert not [ln for ln in html.splitlines() if ln.startswith("|")]
    assert len(page.tables) >= len(links) + 4  # Table 1, matrix, diagnostics, paper's Table 1
    # csv, tex and pdf links are downloads carrying the file's bytes
    files = FILE_LINK.findall(md)
    assert {Path(f).suffix for f in files} == {".csv", ".tex", ".pdf"}
    downloads = {a["download"]: a["href"] for a in page.links if "download" in a}
    for rel in files:
        name = Path(rel).name
        assert name in hrefs
        got = base64.b64decode(downloads[name].split(";base64,", 1)[1])
        assert got == (run / rel).read_bytes(), rel


def test_numbers_right_words_left(built: tuple[Path, str, str]) -> None:
    _, _, html = built
    page = Page(html)
    matrix = next(t for t in page.tables if "".join(t["head"][1][0]) == "Model")
    body = [(("".join(c)).strip(), a.get("style", "")) for c, a in matrix["body"]]
    assert ("base", "") in body  # the Markdown right-aligned this column of names
    assert any(re.match(r"\d", t) and "right" in s for t, s in body)
    assert all("right" not in s for t, s in body if t in ("synth", "GRPO-BI"))


def test_missing_files_leave_a_visible_note(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "run", n_test={"synth": 40}, n_train=10, steps=4)
    md_path = write_report(run)
    (run / "figures" / "gains.png").unlink()
    (run / "tables" / "matrix.md").unlink()
    (run / "tables" / "table1.tex").unlink()
    page = Page(write_html(md_path).read_text(encoding="utf-8"))
    notes = " | ".join(page.notes)
    assert "missing: figures/gains.png" in notes
    assert "missing: tables/matrix.md" in notes
    assert "missing: tables/table1.tex" in notes
    assert len(page.imgs) == len(IMAGE_REF.findall(md_path.read_text())) - 1  # the rest is there


def test_html_special_characters_are_escaped(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "run", n_test={"synth": 40}, n_train=10, steps=4)
    name = 'tiny<script>alert("x")</script> & <b>co</b>'
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, "model": name}))
    html = (write_report(run).with_suffix(".html")).read_text(encoding="utf-8")
    assert "<script" not in html and "<b>co" not in html
    assert "tiny&lt;script&gt;alert(" in html
    page = Page(html)
    assert name in "".join(page.text)  # shown as written (the title, the heading, the run list)


def test_any_markdown_report(tmp_path: Path) -> None:
    """A sweep-style report: its own figures and tables, outside links, raw HTML, a run's report."""
    (tmp_path / "figures").mkdir()
    (tmp_path / "tables").mkdir()
    (tmp_path / "runs" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 4), (200, 10, 10)).save(tmp_path / "figures" / "sweep lr.png")
    (tmp_path / "tables" / "sweep.md").write_text("| lr | acc |\n|---|---|\n| 1e-4 | 51.0 |\n")
    (tmp_path / "runs" / "a" / "report.md").write_text("# run a\n")
    (tmp_path / "runs" / "a" / "report.html").write_text("<p>run a</p>")
    md = tmp_path / "sweep.md"
    md.write_text(
        "# Sweep <1 & 2>\n\n"
        "![Sweep](figures/sweep%20lr.png)\n\n"
        "![remote](https://example.org/x.png)\n\n"
        "See [sweep.md](tables/sweep.md), [run a](runs/a/report.md) and "
        "[the paper](https://arxiv.org/abs/2604.03179).\n\n"
        "<div onclick=x>raw</div>\n\n"
        "| setting | accuracy |\n|---|---|\n| lr=1e-4 | 51.0 |\n| lr=3e-4 | — |\n"
    )
    out = write_html(md)
    assert out == tmp_path / "sweep.html"
    html = out.read_text(encoding="utf-8")
    page = Page(html)
    assert "<title>Sweep &lt;1 &amp; 2&gt;</title>" in html
    assert "<div onclick" not in html and "&lt;div onclick=x&gt;raw&lt;/div&gt;" in html
    [img] = page.imgs
    assert (
        data_bytes(img["src"], "image/png") == (tmp_path / "figures" / "sweep lr.png").read_bytes()
    )
    assert "https://example.org" not in " ".join(i["src"] for i in page.imgs)
    assert any("not embedded" in n and "https://example.org/x.png" in n for n in page.notes)
    hrefs = [a["href"] for a in page.links]
    assert "runs/a/report.html" in hrefs and "https://arxiv.org/abs/2604.03179" in hrefs
    table_anchor = next(h for h in hrefs if h.startswith("#") and "sweep" in h)
    assert table_anchor[1:] in page.ids and ["lr", "acc"] in page.headers()
    inline = next(t for t in page.tables if [c for c, _ in t["head"]][0] == ["setting"])
    styles = {("".join(c)).strip(): a.get("style", "") for c, a in inline["body"]}
    assert "right" in styles["51.0"] and "right" not in styles["lr=1e-4"]  # numbers right-aligned


def test_rebuild_is_byte_identical(built: tuple[Path, str, str]) -> None:
    run, _, html = built
    assert write_html(run / "report.md").read_text(encoding="utf-8") == html


def test_cli_says_where_the_html_is(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "cli", n_test={"synth": 30}, n_train=10, steps=3)
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert str(run / "report.html") in res.output.replace("\n", "")
    assert (run / "report.html").is_file()
