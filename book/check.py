"""Look at the built course site in a real browser: screenshots and an offline check.

    python -m book.check [SITE] [OUT]      # what `make book-check` runs after `make book`

Serves SITE (default ``build/book``) from a local ``http.server``, opens it in Debian's chromium
driven by playwright (``executable_path``; never ``playwright install``), and saves into OUT
(default ``build/book-check``): the landing page (top and whole), and lesson 05's top, first
control widget, first progress bar, first table, its long FiLM equation and an opened solution,
lesson 10's wide three-panel figure, and a search. It fails if a page requests anything outside
the local server (the site must work offline), if a picture on the page did not load, or if 05 or
10 shows a printed line cut at the edge, a clipped equation, a figure shrunk below 60 % of its
size, or a ``# NBVAL_...`` marker.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
LESSON = "05_fusion"
WIDE = "10_evaluation"  # its three-panel robustness figure is the widest on the site
# Read in the page: printed output lines wider than their box (cut), display equations wider than
# the column that cannot scroll (clipped), images shown at under 60 % of their size, NBVAL markers.
LAYOUT_PROBLEMS = """() => ({
  cut_output_lines: [...document.querySelectorAll('.cell_output pre')]
      .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).whiteSpace !== 'pre-wrap').length,
  clipped_equations: [...document.querySelectorAll('div.math')]
      .filter(e => e.scrollWidth > e.clientWidth + 1 && !['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
      .map(e => e.textContent.slice(0, 60)),
  shrunk_figures: [...document.querySelectorAll('.cell_output img')]
      .filter(e => e.naturalWidth > 0 && e.clientWidth < 0.6 * e.naturalWidth).map(e => e.getAttribute('src')),
  nbval_markers: document.querySelector('article').innerText.includes('NBVAL_'),
})"""


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A quiet static file server on a free local port; returns it and its base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # the browser drops connections when it moves on to the next page
    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def shoot(site: Path, out: Path) -> list[Path]:
    """Take the screenshots; return their paths. Raises AssertionError on off-site requests or broken images."""
    from playwright.sync_api import sync_playwright

    if not (site / "index.html").exists():
        raise FileNotFoundError(f"no site at {site}: run `make book` first")
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError("no chromium: apt-get install -y chromium (make book-check does)")
    out.mkdir(parents=True, exist_ok=True)
    server, url = serve(site)
    outside, shots = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: None if r.url.startswith((url, "data:", "about:", "blob:")) else outside.append(r.url))

            def save(name: str, **kw) -> None:
                path = out / f"{name}.png"
                (kw.pop("locator").screenshot(path=str(path)) if "locator" in kw
                 else page.screenshot(path=str(path), **kw))
                shots.append(path)

            for name, path in [("landing", "index.html"), (f"{LESSON}-top", f"{LESSON}.html")]:
                page.goto(f"{url}/{path}", wait_until="networkidle")
                page.wait_for_timeout(1500)  # MathJax 2 typesets after load
                broken = page.eval_on_selector_all("img", "els => els.filter(e => !e.complete || e.naturalWidth === 0)"
                                                          ".map(e => e.getAttribute('src'))")
                assert not broken, f"{path}: images that did not load: {broken}"
                save(name)
                if name == "landing":
                    save("landing-full", full_page=True)
            for name, selector in [("widget", ".mmw-static:has(.mmw-live)"), ("progress", ".mmw-static:has(progress)"),
                                   ("table", "table.dataframe")]:
                target = page.locator(selector).first
                target.scroll_into_view_if_needed()
                page.evaluate("window.scrollBy(0, -120)")
                save(f"{LESSON}-{name}")
            # the spots that once rendered badly: a long display equation (was clipped), printed lines
            # (were cut at the right edge), a wide three-panel figure (was shrunk), test-runner markers
            equation = page.locator("div.math:has-text('broadcast')").first
            equation.scroll_into_view_if_needed()
            page.evaluate("window.scrollBy(0, -200)")
            save(f"{LESSON}-equation")
            for path in (f"{LESSON}.html", f"{WIDE}.html"):
                if not page.url.endswith(path):
                    page.goto(f"{url}/{path}", wait_until="networkidle")
                    page.wait_for_timeout(1500)
                bad = page.evaluate(LAYOUT_PROBLEMS)
                assert not any(bad.values()), f"{path}: layout problems {bad}"
                if path == f"{WIDE}.html":
                    wide = page.locator("div.tag_full-width img").last
                    wide.scroll_into_view_if_needed()
                    page.evaluate("window.scrollBy(0, -100)")
                    save(f"{WIDE}-wide-figure")
                    page.goto(f"{url}/{LESSON}.html", wait_until="networkidle")
                    page.wait_for_timeout(1500)
            solution = page.locator("details.mmc-solution").first
            solution.scroll_into_view_if_needed()
            solution.locator("summary").click()
            page.wait_for_timeout(300)
            save(f"{LESSON}-solution", locator=solution)
            page.goto(f"{url}/search.html?q=fusion", wait_until="networkidle")
            page.wait_for_selector("#search-results li", timeout=15_000)
            save("search")
            browser.close()
    finally:
        server.shutdown()
    assert not outside, f"the site requested things outside itself (it must work offline): {outside[:5]}"
    return shots


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    site = Path(argv[0]) if argv else ROOT / "build" / "book"
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "build" / "book-check"
    for path in shoot(site, out):
        print(f"screenshot: {path}")
    print("no request left the local server; every image loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
