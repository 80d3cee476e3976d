"""Benchmark: how the app feels, measured in Chromium. Not a test: run it by hand,

    python bench/app_latency.py        # about two minutes

It starts `streamlit run app.py` on a free port (training the default model
into a temporary home first) and drives Debian's Chromium with Playwright:

- warm page open: from the navigation's start to the Convert page's answer
  and attention heatmap on screen (the server, the model and the browser warm);
- a new date: from the Enter key to the new answer and heatmap drawn;
- a page switch: from the click in the sidebar to the new page's title drawn
  and its script run finished.

The last three are timed inside the page (performance.now(), a
MutationObserver), from the user's own event: Playwright's round trips do not
count. Stop is timed from Playwright's click to the message, so it includes
them.
- Stop on the largest model the Train form allows: from the click to
  "Training stopped";
- the default training run in the app, against the `train` command's
  `train_seconds` for the same settings (the app checks held-out dates about
  twice a second for its live charts; the command only at epoch ends).

Prints a table of medians and, last, one JSON line.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking"]  # fmt: skip
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
HEATMAP = '[data-testid="stVegaLiteChart"] svg'
BIGGEST = "hidden=256&embedding=128&layers=3&batch=256&attention=additive"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def idle(page: Page) -> None:
    page.wait_for_selector(IDLE, state="attached", timeout=60_000)


# Timed inside the page, from the user's own event (the Enter key, the click)
# to the DOM showing the result: Playwright's round trips are not counted.
WATCH = """() => {
  window.marks = {};
  const watch = () => {
    const now = performance.now(), m = window.marks;
    const answers = [...document.querySelectorAll('h3 code')]
      .map(e => e.innerText).join();
    if (answers !== m.lastAnswer) { m.answer = now; m.lastAnswer = answers; }
    const svg = document.querySelector('[data-testid="stVegaLiteChart"] svg');
    const drawn = svg ? svg.textContent : '';
    if (drawn !== m.lastSvg) { m.svg = now; m.lastSvg = drawn; }
    const h1 = document.querySelector('h1');
    const title = h1 ? h1.innerText : '';
    if (title !== m.lastTitle) { m.title = now; m.lastTitle = title; }
    const state = document.querySelector('[data-testid="stApp"]')
      .getAttribute('data-test-script-state');
    if (state !== m.lastState) { m[state] = now; m.lastState = state; }
  };
  new MutationObserver(watch).observe(document.body,
    {subtree: true, childList: true, characterData: true, attributes: true});
  const start = e => { window.marks.start = performance.now(); };
  document.addEventListener('keydown', e => { if (e.key === 'Enter') start(e); }, true);
  document.addEventListener('click', start, true);
  watch();
}"""


def marks(page: Page) -> dict[str, float]:
    return page.evaluate("() => window.marks")


def reset(page: Page) -> None:
    page.evaluate(
        "() => { for (const k of ['start', 'answer', 'svg', 'title', 'notRunning'])"
        " delete window.marks[k]; }"
    )


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples)


def measure(page: Page, url: str) -> dict:
    out: dict = {}
    opens = []
    for _ in range(8):
        page.goto(url)
        page.get_by_text("22/Nov/2024").first.wait_for()
        page.wait_for_selector(HEATMAP)
        # From the navigation's start (performance.now()'s zero) to both drawn.
        opens.append(page.evaluate(
            """async () => { await new Promise(r => requestAnimationFrame(r));
                             return performance.now(); }"""
        ))  # fmt: skip
        # The first open of a fresh browser page is not a warm one.
    out["warm_open_ms"] = median_ms(opens[1:])

    page.evaluate(WATCH)
    box = page.get_by_label("Date as yy-mm-dd", exact=True)
    dates = [("99-12-31", "31/Dec/1999"), ("74-01-05", "05/Jan/1974"),
             ("00-02-29", "29/Feb/2000"), ("24-11-22", "22/Nov/2024")] * 3  # fmt: skip
    enters = []
    for text, want in dates:
        box.fill(text)
        idle(page)
        reset(page)
        box.press("Enter")
        page.wait_for_function(
            "want => window.marks.lastAnswer && window.marks.lastAnswer.includes(want)"
            " && window.marks.svg && window.marks.notRunning > window.marks.start",
            arg=want,
        )
        page.wait_for_timeout(300)  # a late redraw would still be counted
        m = marks(page)
        enters.append(max(m["answer"], m["svg"]) - m["start"])
    out["enter_ms"] = median_ms(enters)

    switches = []
    nav = page.locator('[data-testid="stSidebarNav"]')
    pages = [("Step through", "Step through"), ("Convert", "Convert a date"),
             ("Exposure bias", "Exposure bias"), ("Train", "Train a model"),
             ("Attention forming", "Attention forming"),
             ("Compare runs", "Compare runs")]  # fmt: skip
    for name, heading in pages * 2:
        idle(page)
        reset(page)
        nav.get_by_role("link", name=name, exact=True).click()
        page.wait_for_function(
            "heading => window.marks.lastTitle === heading"
            " && window.marks.notRunning > window.marks.start",
            arg=heading,
        )
        m = marks(page)
        switches.append(max(m["title"], m["notRunning"]) - m["start"])
    out["switch_ms"] = median_ms(switches)

    stops = []
    for _ in range(3):
        page.goto(f"{url}train?{BIGGEST}&train_size=20000&epochs=10")
        idle(page)
        page.get_by_role("button", name="Train", exact=True).click()
        progress = page.locator('[data-testid="stMain"] [data-testid="stProgress"]')
        progress.get_by_text(re.compile(r"Step [3-9] ")).wait_for(timeout=60_000)
        started = time.perf_counter()
        page.get_by_role("button", name="Stop training").click()
        page.get_by_text(re.compile("Training stopped after")).wait_for(timeout=30_000)
        stops.append((time.perf_counter() - started) * 1000)
    out["stop_biggest_ms"] = median_ms(stops)

    app_seconds = []
    for _ in range(3):
        page.goto(f"{url}train")
        idle(page)
        page.get_by_role("button", name="Train", exact=True).click()
        done = page.get_by_text(re.compile(r"Training finished after .* and [\d.]+ s"))
        done.wait_for(timeout=60_000)
        app_seconds.append(float(re.search(r"and ([\d.]+) s", done.inner_text())[1]))
    out["app_train_seconds"] = statistics.median(app_seconds)
    return out


def command_train_seconds(home: str) -> float:
    runs = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "date_seq2seq", "train", "--json", "--out",
             str(Path(home) / "cli.pt")],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        runs.append(json.loads(done.stdout.strip().splitlines()[-1])["train_seconds"])
    return statistics.median(runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DATE_SEQ2SEQ_HOME": home}
        subprocess.run([sys.executable, "-m", "date_seq2seq", "train"], check=True,
                       env=env, cwd=ROOT, capture_output=True)  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless",
             "true", "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "_stcore/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                result = measure(page, url)
                browser.close()
        finally:
            server.terminate()
            server.wait(10)
        result["command_train_seconds"] = command_train_seconds(home)
    ratio = result["app_train_seconds"] / result["command_train_seconds"]
    result["app_to_command_ratio"] = ratio
    rows = [
        ("warm page open -> answer and heatmap (ms, median of 7)",
         result["warm_open_ms"]),
        ("Enter on a new date -> answer and heatmap (ms, median of 12)",
         result["enter_ms"]),
        ("page switch (ms, median of 12)", result["switch_ms"]),
        ("Stop on the largest model -> stopped (ms, median of 3)",
         result["stop_biggest_ms"]),
    ]  # fmt: skip
    for name, value in rows:
        print(f"| {name:<62} | {value:8.0f} |")
    print(
        f"| default training: app {result['app_train_seconds']:.2f} s, command "
        f"{result['command_train_seconds']:.2f} s (train_seconds, medians of 3) "
        f"| {ratio:.2f}x |"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
