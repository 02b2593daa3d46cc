"""Open a report.html in headless Chromium and check what a reader would see.

    python scripts/check_report_html.py RUN_DIR/report.html [--screenshot OUT.png]

Checks, printed as a short summary (exit 1 when one fails, 2 when Chromium is missing):
- the file names nothing outside itself (no http src, no <link>, no external script or url());
- every image that report.md beside it references is an <img> with a data: src, and Chromium
  decoded each one (complete, naturalWidth > 0), under the page's own Content-Security-Policy,
  which must report no blocked load;
- how many tables the page renders and how many "missing:" notes it shows.
With --screenshot, the page as Chromium lays it out, 1200 px wide and as tall as the page (capped
by --max-height). Chromium is Debian's `chromium` package: apt-get install -y chromium
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--mute-audio"]
# Outside references a self-contained page must not have.
EXTERNAL = {
    "src= with a URL": r"""\bsrc\s*=\s*["']?\s*(?:https?:)?//""",
    "<link> element": r"<link\b",
    "external <script>": r"<script\b[^>]*\bsrc\s*=",
    "url() with a URL": r"url\(\s*['\"]?\s*(?:https?:)?//",
    "@import": r"@import\b",
}
# Injected into a copy of the page (its CSP allows this one script by nonce): records blocked
# loads, then on load writes what the images and tables look like into <pre id=hallucue-check>.
PROBE = """<script nonce="hallucue-check">
var blocked = [];
document.addEventListener("securitypolicyviolation", function (e) { blocked.push(e.blockedURI); });
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {
    images: imgs.length,
    data_images: imgs.filter(function (i) { return i.src.indexOf("data:") === 0; }).length,
    decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    tables: document.querySelectorAll("table").length,
    missing: document.querySelectorAll(".missing").length,
    height: document.documentElement.scrollHeight,
    blocked: blocked
  };
  var pre = document.createElement("pre");
  pre.id = "hallucue-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def find_chromium(given: str | None) -> str:
    """The browser to run, or exit 2 saying how to install it."""
    for name in [given] if given else BROWSERS:
        path = shutil.which(name) if name else None
        if path:
            return path
    print(
        "error: Chromium was not found"
        + (f" at {given}" if given else f" (looked for {', '.join(BROWSERS)} on PATH)")
        + ". On Debian or Ubuntu install the `chromium` package: sudo apt-get install -y chromium",
        file=sys.stderr,
    )
    sys.exit(2)


def chromium(browser: str, args: list[str], profile: Path, timeout: float) -> str:
    """Run headless Chromium with a throwaway profile; its stdout."""
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        sys.exit(f"error: Chromium exited with {res.returncode}:\n{res.stderr[-2000:]}")
    return res.stdout


def static_problems(text: str) -> list[str]:
    """Outside references found in the page's source."""
    return [what for what, pattern in EXTERNAL.items() if re.search(pattern, text, re.I)]


def image_refs(report: Path) -> int | None:
    """How many images the Markdown beside the page references; None without one."""
    md = report.with_suffix(".md")
    if not md.is_file():
        return None
    return len(re.findall(r"!\[[^\]]*\]\([^)]+\)", md.read_text(encoding="utf-8")))


def probe(browser: str, report: Path, tmp: Path, timeout: float) -> dict:
    """Chromium's view of the page: a copy with PROBE injected, its DOM dumped after load."""
    text = report.read_text(encoding="utf-8")
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', text)
    if meta:  # keep the page's own policy, allowing only the probe's script
        allowed = meta.group(0).replace(
            meta.group(1), meta.group(1) + "; script-src 'nonce-hallucue-check'"
        )
        text = text.replace(meta.group(0), allowed + "\n" + PROBE, 1)
    else:
        text = text.replace("<head>", "<head>\n" + PROBE, 1)
    copy = tmp / report.name
    copy.write_text(text, encoding="utf-8")
    dom = chromium(
        browser,
        ["--virtual-time-budget=10000", "--dump-dom", copy.as_uri()],
        tmp / "profile-dom",
        timeout,
    )
    found = re.search(r'<pre id="hallucue-check">(.*?)</pre>', dom, re.S)
    if not found:
        sys.exit("error: the probe did not run: the DOM Chromium dumped has no result")
    return json.loads(html.unescape(found.group(1)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="the report.html to check")
    ap.add_argument("--screenshot", type=Path, help="write the rendered page to this PNG")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--max-height", type=int, default=16000)
    ap.add_argument("--chromium", help="the browser binary (default: found on PATH)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per Chromium run")
    args = ap.parse_args()
    report = args.report.resolve()
    if not report.is_file():
        sys.exit(f"error: {args.report} does not exist")
    browser = find_chromium(args.chromium)
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout
    failures = [f"the source has a {w}" for w in static_problems(report.read_text("utf-8"))]
    expected = image_refs(report)
    with tempfile.TemporaryDirectory() as tmp:
        seen = probe(browser, report, Path(tmp), args.timeout)
        if args.screenshot:
            height = min(max(seen["height"], 600), args.max_height)
            shot = args.screenshot.resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            chromium(
                browser,
                [f"--screenshot={shot}", f"--window-size={args.width},{height}", report.as_uri()],
                Path(tmp) / "profile-shot",
                args.timeout,
            )
    if expected is not None and seen["decoded"] != expected:
        failures.append(
            f"report.md references {expected} images, Chromium decoded {seen['decoded']}"
        )
    if seen["decoded"] != seen["images"] or seen["data_images"] != seen["images"]:
        failures.append("some <img> is not a decoded data: image")
    if seen["blocked"]:
        failures.append(f"the page's policy blocked loads of: {', '.join(seen['blocked'])}")
    print(f"{report} ({report.stat().st_size / 1e6:.2f} MB), {version.strip()}")
    print(
        f"images: {expected if expected is not None else '?'} referenced in report.md, "
        f"{seen['images']} <img> ({seen['data_images']} data:), {seen['decoded']} decoded"
    )
    print(f"tables rendered: {seen['tables']}; 'missing:' notes: {seen['missing']}")
    print(f"page height: {seen['height']} px at {args.width} px wide")
    if args.screenshot:
        print(f"screenshot: {args.screenshot} ({args.width}x{height})")
    for f in failures:
        print(f"FAIL: {f}")
    print("OK" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
