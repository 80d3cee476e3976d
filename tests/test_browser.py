"""End to end in a real browser: Streamlit serves app.py, headless Chromium drives it.

Skipped when Chromium or Playwright is missing, unless REQUIRE_BROWSER=1 (CI),
which turns the skip into a failure. Playwright cannot download its own browsers
here, so it drives Debian's /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
ARTIFACTS = ROOT / "artifacts"
# The README's screenshots are refreshed only on request (UPDATE_SCREENSHOTS=1),
# so running the tests never changes tracked files.
DOCS = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else ARTIFACTS

STARTUP_TIMEOUT = 90.0  # seconds: server start + training the default model
SESSION_GRACE = 15  # seconds a run waits for a closed tab to come back (ui.jobs)
RUN_TIMEOUT_MS = 20_000  # one script run after an input
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHART = (
    '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg, '
    ".vega-embed canvas, .vega-embed svg"
)


def _missing() -> str | None:
    if sync_playwright is None:
        return "the playwright Python package is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (Playwright cannot download browsers)"
    return None


_why = _missing()
if _why:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {_why}", pytrace=False)
    pytest.skip(f"browser test skipped: {_why}", allow_module_level=True)


# --- the server -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    stderr_path: Path
    started: float  # time.monotonic() when the process was started
    page_errors: list[str] = field(default_factory=list)
    vega_warnings: list[str] = field(default_factory=list)  # from the console

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as e:
            return f"(cannot read {self.stderr_path}: {e})"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    @contextlib.contextmanager
    def diagnosed(self, page: Page, name: str) -> Iterator[None]:
        """On failure: screenshot to artifacts/, server stderr tail in the message."""
        try:
            yield
        except (AssertionError, PlaywrightError) as e:
            shot = ARTIFACTS / f"browser_{name}_failure.png"
            with contextlib.suppress(PlaywrightError):
                page.screenshot(path=str(shot), full_page=True)
            raise AssertionError(
                f"{e}\n--- browser page errors: {self.page_errors or 'none'}"
                f"\n--- screenshot: {shot}"
                f"\n--- server stderr (tail of {self.stderr_path}) ---\n{self.tail()}"
            ) from e


def _small_human_model():  # noqa: ANN202 - a Checkpoint
    """A human-task model trained a little: the real one takes a minute."""
    from date_seq2seq import DataConfig, ModelConfig, TrainConfig, Trainer
    from date_seq2seq.data import task_vocabulary

    trainer = Trainer(DataConfig(task="human", train_size=1000, held_out_size=50),
                      ModelConfig(vocab_size=len(task_vocabulary("human"))),
                      TrainConfig(epochs=1))  # fmt: skip
    trainer.run()
    return trainer.checkpoint()


def default_checkpoint_path_in(home: Path, task: str) -> Path:
    """Where the server, whose home is `home`, looks for a task's default model."""
    from date_seq2seq.converter import default_checkpoint_path

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATE_SEQ2SEQ_HOME", str(home))
        return default_checkpoint_path(task)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser")
    home = tmp / "home"  # no default model: the app trains one on first start
    home.mkdir()
    _small_human_model().save(default_checkpoint_path_in(home, "human"))
    port = _free_port()
    env = {**os.environ, "DATE_SEQ2SEQ_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    stderr_path = tmp / "streamlit.stderr"
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
    ]  # fmt: skip
    started = time.monotonic()
    with (
        open(tmp / "streamlit.stdout", "wb") as out,
        open(stderr_path, "wb") as err,
    ):
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True
        )
    srv = Server(f"http://127.0.0.1:{port}", proc, stderr_path, started)
    try:
        deadline = started + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"streamlit exited with {proc.returncode}:\n{srv.tail()}",
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(
                    f"{srv.url}/_stcore/health", timeout=2
                ) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"streamlit not healthy after {STARTUP_TIMEOUT:.0f} s:\n"
                    f"{srv.tail()}",
                    pytrace=False,
                )
            time.sleep(0.2)
        yield srv
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # Nothing else may survive in the group either.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# --- the browser ----------------------------------------------------------


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - playwright's Browser
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def app_page(browser, server: Server) -> Iterator[Page]:  # noqa: ANN001
    """A fresh browser session (so a fresh Streamlit session) on the app."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    server.page_errors.clear()
    server.vega_warnings.clear()
    page.on("pageerror", lambda e: server.page_errors.append(str(e)))

    def console(message) -> None:  # noqa: ANN001 - playwright's ConsoleMessage
        if message.type == "warning" and message.text.startswith("WARN"):
            server.vega_warnings.append(message.text)

    page.on("console", console)
    try:
        yield page
    finally:
        context.close()


def open_app(page: Page, server: Server, path: str = "") -> None:
    """Load a page of the app and wait for its first run (which may train the
    default model). `path` is a page's address, with a link's setup if any."""
    page.goto(server.url + "/" + path, wait_until="domcontentloaded")
    remaining_ms = max(
        5_000, (STARTUP_TIMEOUT - (time.monotonic() - server.started)) * 1000
    )
    expect(page.locator("h1").first).to_be_visible(timeout=remaining_ms)
    expect(page.locator(IDLE)).to_be_attached(timeout=remaining_ms)


def wait_idle(page: Page) -> None:
    expect(page.locator(IDLE)).to_be_attached(timeout=RUN_TIMEOUT_MS)


def enter_date(page: Page, text: str) -> None:
    box = page.get_by_label("Date as yy-mm-dd", exact=True)
    box.clear()
    box.fill(text)
    box.press("Enter")


def model_output(page: Page):  # noqa: ANN201 - playwright Locator
    """The big code-formatted answer under "Model output"."""
    column = page.locator('[data-testid="stColumn"]').filter(has_text="Model output")
    return column.locator("h3 code").first


def main_area(page: Page):  # noqa: ANN201 - playwright Locator
    return page.locator('[data-testid="stMain"]')


def open_page(page: Page, name: str):  # noqa: ANN201 - playwright Locator
    """Open a page from the sidebar's navigation; return the main area."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role(
        "link", name=name, exact=True
    ).click()
    expect(page.locator("h1").first).to_be_visible()
    wait_idle(page)
    return main_area(page)


def enter_bad_date(page: Page, box, text: str, needle: str) -> None:  # noqa: ANN001
    """Type an impossible date into `box`: an inline error, never a traceback."""
    box.fill(text)
    box.press("Enter")
    error = main_area(page).locator('[data-testid="stAlertContentError"]')
    expect(error).to_contain_text(needle)
    wait_idle(page)
    assert_no_traceback(page)


def assert_no_traceback(page: Page) -> None:
    body = page.locator("body").inner_text()
    assert "Traceback" not in body, f"a traceback is on the page:\n{body[-2000:]}"
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def assert_charts_quiet(server: Server) -> None:
    """Vega warned of nothing (an empty extent, a log scale at 0) so far."""
    assert not server.vega_warnings, server.vega_warnings[:5]


PAGE_HEIGHT_JS = """() => Math.max(document.body.scrollHeight, ...Array.from(
    document.querySelectorAll('[data-testid="stMain"], section'),
    el => el.scrollHeight))"""


def screenshot(page: Page, *paths: Path) -> None:
    """Whole-page screenshot: Streamlit scrolls inside stMain, so grow the viewport.

    The page can grow again once laid out at the new size (the table, the
    charts), so measure until the height stops changing.
    """
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    size = page.viewport_size or {"width": 1400, "height": 1000}
    height = size["height"]
    for _ in range(5):
        wanted = min(int(page.evaluate(PAGE_HEIGHT_JS)), 6000)
        if wanted <= height:
            break
        height = wanted
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(200)  # let the charts and the table re-layout
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)


# --- tests ----------------------------------------------------------------


def test_convert(app_page: Page, server: Server) -> None:
    page = app_page
    with server.diagnosed(page, "convert"):
        open_app(page, server)
        # The session starts on 24-11-22, so the first run already shows an answer.
        expect(model_output(page)).to_have_text("22/Nov/2024")
        print(
            "\n[browser] seconds from server start to first answer: "
            f"{time.monotonic() - server.started:.1f}"
        )
        enter_date(page, "99-12-31")
        expect(model_output(page)).to_have_text("31/Dec/1999")
        wait_idle(page)
        expect(page.locator(CHART).first).to_be_visible()
        assert_no_traceback(page)
        enter_date(page, "24-11-22")
        expect(model_output(page)).to_have_text("22/Nov/2024")
        wait_idle(page)
        screenshot(page, ARTIFACTS / "browser_convert.png", DOCS / "app-convert.png")

        enter_date(page, "24-02-30")
        error = page.locator('[data-testid="stAlertContentError"]')
        expect(error).to_contain_text("29 days")
        wait_idle(page)
        expect(model_output(page)).to_have_count(0)

        # What is typed comes back as typed: no bold, no link, no colour.
        for typed in ("**24**-11-22", "[a](http://e.com)", ":red[x] www.e.com"):
            enter_date(page, typed)
            # Word joiners (U+2060) break bare links; otherwise the text as typed.
            page.wait_for_function(
                """typed => [...document.querySelectorAll(
                    '[data-testid="stAlertContentError"]')].some(el =>
                    el.innerText.replaceAll('\u2060', '').includes(typed))""",
                arg=typed,
            )
            wait_idle(page)
            expect(error.locator("strong, em, a, code, span[style]")).to_have_count(0)

        enter_date(page, "50-01-01")
        warning = page.locator('[data-testid="stAlertContentWarning"]')
        expect(warning).to_contain_text("it wrote")
        wait_idle(page)
        expect(model_output(page)).to_be_visible()
        assert_no_traceback(page)
        assert_charts_quiet(server)


def test_dates_as_people_write_them(app_page: Page, server: Server) -> None:
    page = app_page
    with server.diagnosed(page, "human"):
        open_app(page, server)
        main = main_area(page)
        main.get_by_text("as people write them", exact=True).click()
        box = page.get_by_label("Date as you write it", exact=True)
        expect(box).to_have_value("Friday, 22 November 2024")
        answer = page.locator('[data-testid="stColumn"]').filter(
            has_text="Correct answer"
        )
        expect(answer.locator("h3 code").first).to_have_text("22/Nov/2024")
        expect(page.locator(CHART).first).to_be_visible()
        wait_idle(page)
        screenshot(page, ARTIFACTS / "browser_human.png")
        box.fill("thu 22 nov 24")
        box.press("Enter")
        error = main.locator('[data-testid="stAlertContentError"]')
        expect(error).to_contain_text("is a Friday, not a Thursday")
        wait_idle(page)
        box.fill("2024年11月22日")
        box.press("Enter")
        expect(error).to_have_count(0)
        expect(answer.locator("h3 code").first).to_have_text("22/Nov/2024")
        wait_idle(page)
        assert_no_traceback(page)
        assert_charts_quiet(server)


def test_a_human_task_model_trained_on_the_train_page_is_read_everywhere(
    app_page: Page, server: Server
) -> None:
    """Trained without the attention mask, it looks at the padding: the Convert
    page draws the pad columns for one date at two paddings."""
    page = app_page
    with server.diagnosed(page, "human training"):
        setup = "task=human&train_size=6400&epochs=1&mask_attention=false"
        open_app(page, server, f"train?{setup}")
        main = main_area(page)
        expect(main.get_by_role("checkbox", name="Mask attention")).not_to_be_checked()
        page.get_by_role("button", name="Train", exact=True).click()
        finished = main.get_by_text(re.compile(r"Training finished after [\d,]+ steps"))
        expect(finished).to_be_visible(timeout=120_000)
        wait_idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        expect(sidebar).to_contain_text("as people write them")
        main = open_page(page, "Convert")
        box = page.get_by_label("Date as you write it", exact=True)
        expect(box).to_be_visible()
        expect(main).to_contain_text("Converting with your model")
        expect(main).to_contain_text("The same date, two paddings")
        expect(main).to_contain_text("does not mask attention")
        expect(page.locator(CHART)).to_have_count(2)  # as typed, and padded
        box.fill("22.11.24")
        box.press("Enter")
        wait_idle(page)
        expect(main).to_contain_text("With 22 <PAD> after it")
        main.get_by_role("button", name=re.compile("^Measure every form")).click()
        wait_idle(page)
        tables = main.locator('[data-testid="stDataFrame"]')
        expect(tables).to_have_count(2)  # every form's figures, and the steps
        expect(main).to_contain_text(re.compile("answers? moved"))
        changed = main.locator('[class*="st-key-moved_"] button')
        expect(changed).to_have_count(6)  # 57 of 2,760 moved for this seed
        changed.first.click()  # the same date, two paddings, two answers
        wait_idle(page)
        expect(main).to_contain_text(re.compile(r"answer changed:\W*\s\S+ became"))
        page.set_viewport_size({"width": 1400, "height": 1000})
        screenshot(page, ARTIFACTS / "browser_padding.png", DOCS / "app-padding.png")
        assert_no_traceback(page)
        assert_charts_quiet(server)


def test_training_goes_on_whatever_the_user_does(
    app_page: Page, server: Server
) -> None:
    """A long run at the tutorial's rate on 20,000 dates: typing dates and
    opening other pages never stops it, and it ends by itself."""
    page = app_page
    with server.diagnosed(page, "background"):
        open_app(page, server, "train?lr=0.001&train_size=20000&epochs=5")
        page.get_by_role("button", name="Train", exact=True).click()
        stop = page.get_by_role("button", name="Stop training")
        expect(stop).to_be_visible()
        main = open_page(page, "Convert")
        for date in ("99-12-31", "74-01-01", "00-02-29"):
            enter_date(page, date)
            wait_idle(page)
        expect(
            main.get_by_role("radio", name=re.compile("training now"))
        ).to_be_visible()
        open_page(page, "Step through")
        open_page(page, "Exposure bias")
        sidebar = page.locator('[data-testid="stSidebar"]')
        expect(sidebar).to_contain_text("Training in the background")
        open_page(page, "Train")
        expect(stop).to_be_visible()  # still going
        progress = main.locator('[data-testid="stProgress"]')
        expect(progress).to_contain_text("Step")
        DOCS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1400, "height": 1450})
        page.wait_for_timeout(1500)  # let the curves grow for the README
        page.screenshot(path=str(DOCS / "app-train.png"))
        finished = main.get_by_text(re.compile(r"Training finished after [\d,]+ steps"))
        expect(finished).to_be_visible(timeout=120_000)
        wait_idle(page)
        print(f"\n[browser] {finished.inner_text()}")
        expect(sidebar).to_contain_text("your model")
        assert_no_traceback(page)
        assert_charts_quiet(server)


def test_stop_the_largest_model_the_form_allows(app_page: Page, server: Server) -> None:
    page = app_page
    with server.diagnosed(page, "stop"):
        biggest = "hidden=256&embedding=128&layers=3&batch=256&attention=additive"
        open_app(page, server, f"train?{biggest}&train_size=20000&epochs=10")
        page.get_by_role("button", name="Train", exact=True).click()
        progress = main_area(page).locator('[data-testid="stProgress"]')
        expect(progress).to_contain_text("Step 3 ", timeout=60_000)
        page.get_by_role("button", name="Stop training").click()
        stopped = page.get_by_text(re.compile(r"Training stopped after [\d,]+ steps"))
        expect(stopped).to_be_visible(timeout=10_000)
        wait_idle(page)
        steps = int(re.search(r"after ([\d,]+) steps", stopped.inner_text()).group(1))
        assert steps > 0
        expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("your model")
        expect(page.locator('[data-testid="stSidebar"]')).to_contain_text(
            "Held-out exact match"
        )
        open_page(page, "Convert")
        column = page.locator('[data-testid="stColumn"]').filter(
            has_text="Model output"
        )
        expect(column.locator("h3")).to_be_visible()  # a few steps: maybe "(nothing)"
        assert_no_traceback(page)
        assert_charts_quiet(server)


def test_shared_link_exposure_lab_and_attention_forming(
    app_page: Page, server: Server
) -> None:
    """A link from before pages existed opens the Train page; its weak model
    shows attention forming and where free-running parts from the truth."""
    page = app_page
    with server.diagnosed(page, "link"):
        open_app(page, server, "?epochs=1&train_size=200&snapshot_every=2&lr=fast")
        expect(page.get_by_role("heading", name="Train a model")).to_be_visible()
        warning = page.locator('[data-testid="stAlertContentWarning"]')
        expect(warning).to_contain_text("cannot be used")
        problems = page.locator('[data-testid="stCode"]').first
        expect(problems).to_contain_text("lr=fast: not a number")
        main = main_area(page)
        expect(main.get_by_label("Epochs (at most)")).to_have_value("1")
        examples = main.get_by_role("spinbutton", name="Training examples")
        expect(examples).to_have_value("200")
        screenshot(page, DOCS / "app-link.png")
        main.get_by_role("button", name="Train", exact=True).click()
        finished = page.get_by_text(re.compile(r"Training finished after [\d,]+ steps"))
        expect(finished).to_be_visible(timeout=60_000)
        wait_idle(page)
        steps = int(re.search(r"after ([\d,]+) steps", finished.inner_text()).group(1))
        assert "/train?" in page.url and "train_size=200" in page.url, page.url
        expect(warning).to_have_count(0)  # the link now holds a good setup
        assert_no_traceback(page)

        main = open_page(page, "Attention forming")
        shown = main.get_by_text(re.compile(r"after \d+ steps: the model answers"))
        expect(shown).to_contain_text(f"after {steps} steps")
        expect(main.locator(CHART).first).to_be_visible()
        screenshot(page, DOCS / "app-forming.png")
        main.get_by_role("slider").focus()
        page.keyboard.press("Home")  # back to before the first step
        expect(shown).to_contain_text("after 0 steps")
        wait_idle(page)

        main = open_page(page, "Exposure bias")
        wrong = main.get_by_role("button", name=re.compile(r"^\d\d-\d\d-\d\d$"))
        expect(wrong.first).to_be_visible()  # a weak model gets some dates wrong
        date = wrong.first.inner_text()
        wrong.first.click()
        expect(main.get_by_label("Probe date")).to_have_value(date)
        parted = main.locator('[data-testid="stAlertContentInfo"]')
        expect(parted).to_contain_text("the free run first")
        wait_idle(page)
        expect(main.locator('[data-testid="stDataFrame"]')).to_be_visible()
        print(f"\n[browser] exposure lab on {date}: {parted.inner_text()!r}")
        screenshot(page, DOCS / "app-exposure.png")
        enter_bad_date(page, main.get_by_label("Probe date"), "24-02-30", "29 days")
        assert_charts_quiet(server)


def test_step_through_and_force_a_token(app_page: Page, server: Server) -> None:
    page = app_page
    with server.diagnosed(page, "step_through"):
        open_app(page, server, "step-through")
        main = main_area(page)
        expect(main.get_by_text("Fed in:")).to_contain_text("<GO>")
        main.get_by_role("slider").focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")  # to step 4, where the month is written
        expect(main.get_by_text("Fed in:")).to_contain_text("/")
        wait_idle(page)
        expect(main.locator(CHART)).to_have_count(5)  # query, scores, ... top
        main.get_by_role("combobox").click()
        page.keyboard.type("Oct")
        page.keyboard.press("Enter")
        main.get_by_role("button", name="Force it and decode on").click()
        recovered = main.locator('[data-testid="stAlertContentInfo"]')
        expect(recovered).to_contain_text("After the token forced at step 4")
        wait_idle(page)
        expect(main.get_by_text("Emitted:")).to_contain_text("Oct (forced)")
        step = main.get_by_role("slider", name="Step")
        expect(step).to_have_attribute("aria-valuetext", "4")  # still on it
        print(f"\n[browser] forced Oct at step 4: {recovered.inner_text()!r}")
        screenshot(page, DOCS / "app-step-through.png")
        enter_bad_date(page, main.get_by_label("Date to step through"), "24-13-01",
                       "no month 13")  # fmt: skip
        assert_charts_quiet(server)


def test_compare_runs_and_stop_a_comparison(app_page: Page, server: Server) -> None:
    page = app_page
    with server.diagnosed(page, "compare"):
        open_app(page, server, "compare-runs")
        main = main_area(page)
        main.get_by_label("Epochs (at most)").fill("3")
        main.get_by_role("spinbutton", name="Training examples").fill("2000")
        main.get_by_role("button", name="Compare", exact=True).click()
        stop = main.get_by_role("button", name="Stop comparing")
        expect(stop).to_be_visible()
        expect(stop).to_have_count(0, timeout=120_000)
        wait_idle(page)
        table = main.locator('[data-testid="stDataFrame"]').first
        expect(table).to_be_visible()
        for name in ("none · LSTM", "dot · LSTM", "general · LSTM", "additive · LSTM"):
            expect(table).to_contain_text(name)
        # Three epochs on 2,000 dates leave no attention imperfect: its errors
        # and month confusion matrix are shown.
        expect(main.get_by_text("Where the imperfect ones go wrong")).to_be_visible()
        expect(main.locator(CHART)).to_have_count(2)  # curves and confusion
        assert_no_traceback(page)
        screenshot(page, DOCS / "app-compare.png")

        cells = main.get_by_role("combobox", name="Cell")  # now GRU cells too
        cells.click()
        page.keyboard.type("gru")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")  # close the list, which covers the button
        main.get_by_role("button", name="Compare", exact=True).click()
        progress = main.locator('[data-testid="stProgress"]')
        expect(progress).to_contain_text("(3 of 8)", timeout=120_000)
        stop.click()
        stopped = main.get_by_text(re.compile(r"\d variant\(s\) not trained"))
        expect(stopped).to_be_visible()
        wait_idle(page)
        trained = 8 - int(re.search(r"(\d) variant", stopped.inner_text()).group(1))
        assert 3 <= trained <= 4, stopped.inner_text()  # the third, or the next
        expect(table).to_contain_text("stopped")
        expect(main.get_by_text("Every variant converts")).to_have_count(0)
        assert_no_traceback(page)
        assert_charts_quiet(server)
        # On a projector (1280x720 at 150%: 853 CSS pixels) the results fit.
        page.set_viewport_size({"width": 853, "height": 480})
        page.wait_for_timeout(500)
        scrolls = page.evaluate(
            """() => [...document.querySelectorAll(
                '[data-testid="stDataFrame"] .dvn-scroller')]
                .filter(el => el.scrollWidth > el.clientWidth + 1).length"""
        )
        assert not scrolls, "a results table scrolls sideways on a projector"


def assert_fits(page: Page, name: str, size: str) -> None:
    """No button or text cut, no chart label shortened, no table or page
    wider than the window; a screenshot of it in artifacts/."""
    cut = page.evaluate(
        """() => [...document.querySelectorAll(
            '[data-testid="stMain"] button, [data-testid="stMain"] p')]
            .filter(el => el.scrollWidth > el.clientWidth + 1)
            .map(el => el.innerText)"""
    )
    assert not cut, f"{name}: text cut in {cut}"
    # Vega draws SVG text; one it had to shorten ends in "…".
    cut_in_charts = page.evaluate(
        """() => [...document.querySelectorAll(
            '[data-testid="stVegaLiteChart"] text')]
            .map(el => el.textContent).filter(t => t.includes('…'))"""
    )
    assert not cut_in_charts, f"{name}: chart text cut: {cut_in_charts}"
    # Tables fit too: nothing to scroll sideways inside them.
    wide_tables = page.evaluate(
        """() => [...document.querySelectorAll(
            '[data-testid="stDataFrame"] .dvn-scroller')]
            .filter(el => el.scrollWidth > el.clientWidth + 1).length"""
    )
    assert not wide_tables, f"{name}: a table scrolls sideways"
    main = page.locator('[data-testid="stMainBlockContainer"]')
    wide = main.evaluate("el => el.scrollWidth - el.clientWidth")
    assert wide <= 1, f"{name}: {wide} px wider than the page"
    screenshot(page, ARTIFACTS / f"small_{size}_{name}.png")


@pytest.mark.parametrize(
    ("width", "height", "zoom"), [(1024, 768, 1.0), (1280, 720, 1.5)]
)
def test_small_screens_and_projectors_cut_nothing(
    browser,
    server: Server,
    width: int,
    height: int,
    zoom: float,  # noqa: ANN001
) -> None:
    """Every page at 1024x768 and at 1280x720 zoomed to 150% (a projector): no
    button text cut, nothing wider than the page. Screenshots go to artifacts/."""
    # A 150% zoom is a CSS viewport two thirds the size, drawn 1.5 times as big.
    context = browser.new_context(
        viewport={"width": int(width / zoom), "height": int(height / zoom)},
        device_scale_factor=zoom,
    )
    page = context.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    try:
        for path, name in (("", "convert"), ("step-through", "step"),
                           ("exposure-bias", "exposure"), ("train", "train"),
                           ("attention-forming", "forming"),
                           ("compare-runs", "compare"),
                           ("exercises", "exercises")):  # fmt: skip
            with server.diagnosed(page, f"small_{name}"):
                open_app(page, server, path)
                page.wait_for_timeout(500)  # let the charts lay out
                assert_fits(page, name, f"{width}x{height}@{zoom}")
        # A date as people write it, padded, with every form's figures.
        with server.diagnosed(page, "small_padding"):
            open_app(page, server)
            main_area(page).get_by_text("as people write them", exact=True).click()
            box = page.get_by_label("Date as you write it", exact=True)
            box.fill("22.11.24")
            box.press("Enter")
            wait_idle(page)
            page.get_by_role("button", name=re.compile("^Measure every form")).click()
            expect(
                main_area(page).locator('[data-testid="stDataFrame"]')
            ).to_have_count(2)
            wait_idle(page)
            page.wait_for_timeout(500)
            assert_fits(page, "padding", f"{width}x{height}@{zoom}")
    finally:
        context.close()


def test_the_exercises_page_runs_one_in_the_background(
    app_page: Page, server: Server
) -> None:
    """One click from an exercise to its experiment and to what it showed."""
    page = app_page
    with server.diagnosed(page, "exercises"):
        open_app(page, server, "exercises")
        main = main_area(page)
        expect(main.get_by_role("button", name="Run it")).to_have_count(6)
        # Train without teacher forcing: three variants.
        main.locator(".st-key-run_feeding").get_by_role("button").click()
        expect(main.get_by_role("button", name="Stop comparing")).to_be_visible()
        read = main.locator('[data-testid="stAlertContentInfo"]')
        expect(read).to_contain_text("teacher forcing", timeout=240_000)
        wait_idle(page)
        print(f"\n[browser] exercise read: {read.first.inner_text()!r}")
        screenshot(
            page, ARTIFACTS / "browser_exercises.png", DOCS / "app-exercises.png"
        )
        assert_no_traceback(page)
        assert_charts_quiet(server)


def test_closing_the_tab_ends_its_run(browser, server: Server) -> None:  # noqa: ANN001
    """No orphan: a run whose browser tab has closed stops by itself."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    with server.diagnosed(page, "closed"):
        # Without attention it never reaches 100%: 18,750 steps, a minute or more.
        long = "attention=none&lr=0.0003&train_size=20000&epochs=30"
        open_app(page, server, f"train?{long}")
        page.get_by_role("button", name="Train", exact=True).click()
        expect(page.get_by_role("button", name="Stop training")).to_be_visible()
    context.close()
    closed = time.monotonic()
    watcher = browser.new_context()
    page = watcher.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    try:
        with server.diagnosed(page, "closed_watch"):
            open_app(page, server, "train")
            limits = page.get_by_text("runs at once")
            expect(limits).to_contain_text("(1 going on now)")  # the closed tab's
            while "(0 going on now)" not in limits.inner_text():
                waited = time.monotonic() - closed
                assert waited < SESSION_GRACE + 30, (
                    f"still running after {waited:.0f} s"
                )
                page.wait_for_timeout(1000)
                page.reload()
                wait_idle(page)
            print(f"\n[browser] a closed tab's run ended after {waited:.0f} s")
    finally:
        watcher.close()


FINGERPRINT = re.compile(r"Weights fingerprint ([0-9a-f]{12})")


def test_two_sessions_training_one_link_at_once_equal_a_solo_run(
    browser,  # noqa: ANN001
    server: Server,
) -> None:
    """Each run draws from its own random generator: side by side equals alone."""
    link = "train?dropout=0.3&layers=2&epochs=2&train_size=4000&seed=7"
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000})
                for _ in range(3)]  # fmt: skip
    pages = [context.new_page() for context in contexts]

    def fingerprint(page: Page) -> str:
        shown = page.get_by_text(FINGERPRINT)
        expect(shown).to_be_visible(timeout=120_000)
        return FINGERPRINT.search(shown.inner_text()).group(1)

    try:
        for page in pages:
            page.set_default_timeout(RUN_TIMEOUT_MS)
            open_app(page, server, link)
        side_by_side, alone = pages[:2], pages[2]
        for page in side_by_side:
            page.get_by_role("button", name="Train", exact=True).click()
        for page in side_by_side:  # both running at once
            expect(page.get_by_role("button", name="Stop training")).to_be_visible()
        together = [fingerprint(page) for page in side_by_side]
        alone.get_by_role("button", name="Train", exact=True).click()
        solo = fingerprint(alone)
        for page in pages:
            assert_no_traceback(page)
    finally:
        for context in contexts:
            context.close()
    print(f"\n[browser] side by side {together}, alone {solo}")
    assert together == [solo, solo]
