"""Benchmark the app in headless Chromium: page render times, live-chart latency. JSON out.

    .venv/bin/python bench/app.py [--runs 200] [--events 100000] [--workspace DIR]
                                  [--out bench/out/app.json]

Seeds a workspace with ``--runs`` finished runs and one running run of ``--events`` metric
events (written directly, no training), syncs the index, starts ``streamlit run app.py`` on a
free port and measures, per page, the seconds from navigation to its first meaningful content
(a selector that only appears once the page's data is drawn): opened by its URL (a fresh page
load in the same tab: Streamlit's JavaScript run again, ``pages_s``, with ``drawn`` by the
page's own clock as below) and reached from the sidebar with the app
already loaded (``pages_in_app_s``); and each page opened in a new tab (``pages_new_tab_s``:
its first visit in a fresh browser context, then three loads with the cache warm), timed both
by the harness (``wall``) and by the page's own clock from its navigation start to the first
frame that shows the selector's element (``drawn``), after the server has settled from its
background import (``server_settled_after_s``). The run page is timed twice: to its first chart
and to its title (its first content, drawn before Plotly's module has loaded). Then appends one metric event to
the running run's log and measures how long the live chart takes to show it (its fragment
polls every 2 s), and the server's own time for one chart tick (in this process: the same
``ui.charts`` calls the fragment makes, and the figures' JSON).

``--workspace DIR`` seeds DIR once and reuses it on later calls (the run with the longest log
is the live one), so that a before/after pair measures the same workspace.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the project first, and not bench/ itself: bench/queue.py would shadow the stdlib queue module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from aqa.config import build_run_config, to_dict  # noqa: E402
from aqa.runs import index, status, store  # noqa: E402
from aqa.runs.events import EVENTS_FILE, EventWriter  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def seed(runs_dir: Path, n_runs: int, n_events: int) -> str:
    cfg = to_dict(build_run_config("regression", "synthetic", overrides=["train.epochs=10"]))
    for i in range(n_runs):
        path = store.create_run(runs_dir, cfg)
        ev = EventWriter(path / EVENTS_FILE)
        ev.emit("start", epochs=10, total_steps=100, params=180_000)
        for epoch in range(1, 11):
            ev.metric("loss", 1.0 / epoch, epoch=epoch, step=10 * epoch, split="train")
            ev.metric("rho", 0.5 + 0.04 * epoch + 0.001 * i, epoch=epoch, step=10 * epoch,
                      split="test")
        ev.emit("status", status="finished")
        ev.close()
        store.write_job(path, {"executor": "local", "pid": 1, "start_time": 1, "state": "started",
                               "host": socket.gethostname(), "started": time.time() - 100})
    big = store.create_run(runs_dir, cfg)
    ev = EventWriter(big / EVENTS_FILE)
    ev.emit("start", epochs=10, total_steps=n_events, params=180_000)
    ev.emit("status", status="running")
    for step in range(1, n_events + 1):
        ev.metric("loss", 1.0 / (1 + step ** 0.5) + (0.3 if step % 997 == 0 else 0.0),
                  epoch=1 + step * 10 // n_events, step=step, split="train")
    ev.close()
    mark_running(big)
    return big.name


def mark_running(path: Path) -> None:
    """The live run's job is this process: it stays ``running`` while the bench runs."""
    store.write_job(path, {"executor": "local", "pid": os.getpid(), "pgid": os.getpid(),
                           "start_time": status.process_start_time(os.getpid()),
                           "host": socket.gethostname(), "started": time.time(),
                           "state": "started"})


def chart_ticks(runs_dir: Path, run_id: str, step: int, ticks: int = 5) -> dict:
    """The server's work for a live chart in this process: the first read of the run, then
    ``ticks`` ticks each after one new event (read, figures, their JSON)."""
    from ui import charts

    def tick() -> float:
        t0 = time.perf_counter()
        _, series, _ = charts.live_series(runs_dir, run_id, runs_dir / run_id)
        for _, fig in charts.run_figures(series):
            fig.to_json()
        return time.perf_counter() - t0

    first = tick()
    each = []
    for k in range(ticks):
        ev = EventWriter(runs_dir / run_id / EVENTS_FILE)
        ev.metric("loss", 0.02, epoch=10, step=step + k, split="train")
        ev.close()
        each.append(tick())
    return {"first_read": round(first, 4), "median": round(statistics.median(each), 4),
            "each": [round(x, 4) for x in each]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--workspace", default=None)
    ap.add_argument("--no-browser", action="store_true", help="only the server-side times")
    ap.add_argument("--again", type=int, default=3, help="reruns of each page script timed")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    runs_dir = Path(args.workspace) if args.workspace else \
        Path(tempfile.mkdtemp(prefix="aqa-bench-")) / "runs"
    t0 = time.perf_counter()
    if args.workspace and store.list_run_dirs(runs_dir):
        big = max(store.list_run_dirs(runs_dir),
                  key=lambda p: (p / EVENTS_FILE).stat().st_size).name
        mark_running(runs_dir / big)
        seed_s = None
    else:
        big = seed(runs_dir, args.runs, args.events)
        seed_s = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    index.sync(runs_dir)
    sync_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.sync(runs_dir)
    resync_s = time.perf_counter() - t0

    pages = {  # name: (path, selector of the first meaningful content)
        "home": ("/", "[data-testid=stDataFrame]"),
        "runs": ("/runs", "[data-testid=stDataFrame]"),
        f"run ({args.events:,} events)": (f"/runs?run={big}", ".js-plotly-plot"),
        # the same page's first content (its title), drawn before Plotly's module has loaded
        f"run ({args.events:,} events): title": (f"/runs?run={big}", "h1:has-text('Run ')"),
        "launch": ("/launch", "[data-testid=stForm]"),
        "compare": ("/compare", "[data-testid=stDataFrame]"),
        "score": ("/score", "[data-testid=stFileUploader], [data-testid=stAlert]"),
        "data": ("/data", "button:has-text('Run the doctor')"),
    }
    result = {"runs": args.runs, "events": args.events, "seed_s": seed_s,
              "index_sync_s": round(sync_s, 2), "index_resync_s": round(resync_s, 3)}
    if not args.no_browser:
        result.update(browser_pages(runs_dir, big, pages, args.events))
    result["pages_script_s"] = script_times(runs_dir, pages, args.again)
    result["chart_tick_server_s"] = chart_ticks(runs_dir, big, args.events + 10)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


def script_times(runs_dir: Path, pages: dict, again: int = 3) -> dict:
    """The server's time to run each page's script (app.py, the sidebar, the page), measured
    in this process with Streamlit's AppTest: the first run after switching to the page, and
    the median of ``again`` reruns."""
    from streamlit.testing.v1 import AppTest

    os.environ["AQA_RUNS_DIR"] = str(runs_dir)
    out, seen = {}, set()
    for name, (path, _) in pages.items():
        if path in seen:  # the same page under another selector
            continue
        seen.add(path)
        route, _, query = path.partition("?")
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.run()
        at.switch_page(f"app_pages/{route.strip('/') or 'home'}.py")
        for key, value in (q.split("=", 1) for q in query.split("&") if q):
            at.query_params[key] = value
        t0 = time.perf_counter()
        at.run()
        first = time.perf_counter() - t0
        times = []
        for _ in range(again):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
        if at.exception:
            raise RuntimeError(f"{name}: {at.exception[0].value}")
        out[name] = {"first": round(first, 3), "median": round(statistics.median(times), 3)}
    return out


def browser_pages(runs_dir: Path, big: str, pages: dict, events: int) -> dict:
    """Seconds from navigation to each page's first content in Chromium, and from a new event
    to the live chart showing it."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = dict(os.environ, AQA_RUNS_DIR=str(runs_dir))
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                               "--server.port", str(port), "--server.headless", "true",
                               "--server.fileWatcherType", "none"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    result = {"pages_s": {}, "cold_first_page_s": None}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.add_init_script(drawn_js(pages))
            for _ in range(600):
                try:
                    t0 = time.perf_counter()
                    page.goto(base)
                    break
                except Exception:
                    time.sleep(0.2)
            page.wait_for_selector(pages["home"][1])
            result["cold_first_page_s"] = round(time.perf_counter() - t0, 3)
            # the first page starts the server's background import of torch (ui.common.warm_up):
            # measured pages while it runs pay for it too; say how long it took to settle
            # the first tab leaves Home (its live fragment reruns every few seconds, on the
            # server and in that tab's renderer) while the new tabs are timed
            page.goto("about:blank")
            result["server_settled_after_s"] = settle(server.pid)
            result["pages_new_tab_s"] = new_tab_pages(browser, base, pages)
            for name, (path, selector) in pages.items():
                times, drawn = [], []
                for _ in range(3):
                    t0 = time.perf_counter()
                    page.goto(base + path)
                    page.wait_for_selector(selector)
                    times.append(time.perf_counter() - t0)
                    drawn.append(drawn_s(page, selector))
                result["pages_s"][name] = {**summary(times), "drawn": summary(drawn)}
            result["pages_in_app_s"] = in_app_pages(page, base, pages)
            result["pages_in_app_s"][f"run ({events:,} events)"] = in_app_run(page, base, big)
            # live chart: append one event, wait until the point count shows it
            page.goto(f"{base}/runs?run={big}")
            label = page.get_by_text(re.compile(r"\d+ metric points")).first
            label.wait_for()
            latencies = []
            for k in range(3):
                before = int(label.inner_text().split()[0])
                ev = EventWriter(runs_dir / big / EVENTS_FILE)
                t0 = time.perf_counter()
                ev.metric("loss", 0.01, epoch=10, step=events + 1 + k, split="train")
                ev.close()
                while int(label.inner_text().split()[0]) <= before:
                    time.sleep(0.02)
                latencies.append(time.perf_counter() - t0)
            result["live_event_to_chart_s"] = {"each": [round(x, 3) for x in latencies],
                                               "poll_interval_s": 2.0}
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return result


def summary(values: list[float]) -> dict:
    """Median and min of a page's load times, seconds."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3)}


def settle(pid: int, quiet: float = 0.1, seconds: int = 3, timeout: float = 90.0) -> float:
    """Seconds until the process ``pid`` has used under ``quiet`` of a core in each of
    ``seconds`` seconds in a row (its user + system time from /proc), at most ``timeout``."""
    def cpu() -> float:
        return status.process_cpu_seconds(pid) or 0.0

    t0, calm = time.perf_counter(), 0
    while calm < seconds and time.perf_counter() - t0 < timeout:
        before = cpu()
        time.sleep(1.0)
        calm = calm + 1 if cpu() - before < quiet else 0
    return round(time.perf_counter() - t0, 1)


# Installed in every new document: from the page's own navigation start, the first animation
# frame at which each selector matches an element with a box (the frame it is painted in). The
# harness's clock (goto .. wait_for_selector) also counts the round trips to the browser, which
# wait behind any long task the page runs after the content is drawn.
DRAWN_JS = r"""
(() => {
  const sels = %s, seen = {};
  window.__aqaDrawn = seen;
  const find = (s) => {  // CSS, or Playwright's tag:has-text('text')
    const m = s.match(/^(\w+):has-text\('(.*)'\)$/);
    if (!m) return document.querySelector(s);
    for (const el of document.getElementsByTagName(m[1]))
      if (el.textContent.includes(m[2])) return el;
    return null;
  };
  const poll = () => {
    for (const s of sels) {
      if (seen[s] !== undefined) continue;
      const el = find(s);
      if (el) {
        const r = el.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) seen[s] = performance.now();
      }
    }
    if (Object.keys(seen).length < sels.length && performance.now() < 120000)
      requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
})();
"""


def drawn_js(pages: dict) -> str:
    return DRAWN_JS % json.dumps(sorted({sel for _, sel in pages.values()}))


def drawn_s(page, selector: str) -> float:
    """The page's own seconds from its navigation start to the frame that first showed
    ``selector`` (DRAWN_JS); the harness may see the element before that frame records it."""
    page.wait_for_function("(s) => window.__aqaDrawn && window.__aqaDrawn[s] !== undefined",
                           arg=selector)
    return page.evaluate("(s) => window.__aqaDrawn[s]", selector) / 1000


def new_tab_pages(browser, base: str, pages: dict, loads: int = 3) -> dict:
    """Each page opened by its URL in a new tab (how a link or a bookmark opens it), in a fresh
    browser context: first one tab a page in turn (``first_visit``: the page's own JavaScript
    fetched and compiled for the first time in this browser; Streamlit's core too on the first
    page), then ``loads`` tabs a page, the cache warm (a returning user). ``wall`` is the
    harness's seconds from goto to the selector, ``drawn`` the page's own seconds from its
    navigation start to the first frame showing the selector's element; median and min."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(drawn_js(pages))

    def load(path: str, selector: str) -> tuple[float, float]:
        tab = context.new_page()
        tab.set_default_timeout(120_000)
        try:
            t0 = time.perf_counter()
            tab.goto(base + path)
            tab.wait_for_selector(selector)
            wall = time.perf_counter() - t0
            return wall, drawn_s(tab, selector)
        finally:
            tab.close()

    out = {}
    try:
        for name, (path, selector) in pages.items():
            wall, drawn = load(path, selector)
            out[name] = {"first_visit": {"wall": round(wall, 3), "drawn": round(drawn, 3)}}
        for name, (path, selector) in pages.items():
            walls, drawns = zip(*(load(path, selector) for _ in range(loads)))
            out[name].update(wall=summary(walls), drawn=summary(drawns),
                             drawn_each=[round(d, 3) for d in drawns])
    finally:
        context.close()
    return out


SIDEBAR_TITLES = {"home": "Home", "runs": "Runs", "launch": "Launch", "compare": "Compare",
                  "score": "Score", "data": "Data"}


def in_app_pages(page, base: str, pages: dict) -> dict:
    """Seconds from a click on the sidebar's link to the page's first content, the app already
    loaded in the tab (how a user moves between pages: Streamlit swaps the page over its
    websocket, its JavaScript is not loaded again). Each page is reached from another page that
    does not show the target's selector, so no element of the page left behind can answer."""
    out = {}
    for name, (path, selector) in pages.items():
        title = SIDEBAR_TITLES.get(name)
        if title is None:
            continue
        times = []
        for _ in range(3):
            for source in ("data", "score", "launch", "home"):
                if source == name:
                    continue
                page.goto(base + pages[source][0])
                page.wait_for_selector(pages[source][1])
                page.wait_for_timeout(300)  # let the source page settle
                if page.locator(selector).count() == 0:
                    break
            else:
                raise RuntimeError(f"no source page without {selector!r} to reach {name} from")
            t0 = time.perf_counter()
            page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
            page.wait_for_selector(selector)
            times.append(time.perf_counter() - t0)
        out[name] = {**summary(times),
                     "from": source}
    return out


def in_app_run(page, base: str, run_id: str) -> dict:
    """A run's page opened from Home's "Open a run" (the app already loaded): seconds from the
    click on Open to its first chart."""
    times = []
    for _ in range(3):
        page.goto(base)
        page.wait_for_selector("[data-testid=stDataFrame]")
        box = page.locator(".st-key-home_open [data-testid=stSelectbox]")
        box.click()
        page.keyboard.type(run_id)
        page.keyboard.press("Enter")
        page.wait_for_timeout(500)  # the selection's rerun
        t0 = time.perf_counter()
        page.locator(".st-key-home_open_btn button").click()
        page.wait_for_selector(".js-plotly-plot")
        times.append(time.perf_counter() - t0)
    return {**summary(times), "from": "home"}


if __name__ == "__main__":
    main()
