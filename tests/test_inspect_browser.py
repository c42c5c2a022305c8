"""The `charrnn inspect --html` page in a real browser (headless Chromium, marker `browser`):
one element per character, choosing a unit recolours the text by its values, hovering shows
the predictions, and a 100,000-character page stays responsive."""

import time

import numpy as np
import pytest

from charrnn.tools.inspect import find_units, inspect_text
from charrnn.tools.inspect_html import write_html
from charrnn.tools.units import text_features
from charrnn.store.vocab import Vocab
from tests.browser import browser_or_skip
from tests.conftest import tiny_model, wait_until
from tests.test_inspect import QUOTE_UNIT, QUOTE_VOCAB, quote_model, quote_text

pytestmark = pytest.mark.browser

COLOURS = "return Array.from(document.querySelectorAll('#text span'), " \
          "s => getComputedStyle(s).backgroundColor)"


def rgb(css):
    """'rgb(255, 0, 0)' or 'rgba(0, 0, 0, 0)' -> (r, g, b, alpha)."""
    parts = [float(x) for x in css[css.index("(") + 1:-1].split(",")]
    return tuple(parts) if len(parts) == 4 else (*parts, 1.0)


@pytest.fixture
def browser(tmp_path):
    driver = browser_or_skip(str(tmp_path / "profile"))
    yield driver
    driver.quit()


def open_page(driver, path):
    driver.get(path.as_uri())
    wait_until(lambda: driver.execute_script("return !!(window.inspectPage && inspectPage.ready)"),
               timeout=60, what="the page's script")


def test_the_page_shows_each_character_and_colours_it_by_the_chosen_unit(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    model, _ = quote_model()
    text = quote_text(300)
    ins = inspect_text(model, QUOTE_VOCAB, text)
    page = tmp_path / "page.html"
    write_html(str(page), ins, find_units(ins), "quote.safetensors")
    open_page(browser, page)

    spans = browser.find_elements(By.CSS_SELECTOR, "#text span")
    assert len(spans) == len(text)
    assert browser.execute_script(
        "return Array.from(document.querySelectorAll('#text span'), s => s.textContent)"
        ".join('')") == text
    before = browser.execute_script(COLOURS)

    # the finder's first unit for "inside double quotes" is the hand-set one: click it
    button = browser.find_element(By.CSS_SELECTOR, f".u[data-key='0/h'][data-unit='{QUOTE_UNIT}']")
    assert button.text.startswith(f"L0 h{QUOTE_UNIT} +1.00")
    button.click()
    after = [rgb(c) for c in browser.execute_script(COLOURS)]
    assert sum(a != rgb(b) for a, b in zip(after, before)) > len(text) // 2
    inside = text_features(text)["double_quote"]
    for colour, flag in zip(after, inside):      # +1 inside: red; -1 outside: blue
        r, g, b, _ = colour
        assert (r, g, b) == ((255, 0, 0) if flag else (0, 155, 255)), (colour, flag)

    # hovering a character shows its surprisal and what the model expected there
    ActionChains(browser).move_to_element(spans[5]).perform()
    tip = browser.find_element(By.ID, "tip")
    wait_until(tip.is_displayed, timeout=10, what="the tooltip")
    assert "bits" in tip.text and "expected here" in tip.text and f"L0 h{QUOTE_UNIT} = " in tip.text

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@pytest.mark.slow   # about 10 s: a 100,000-character page in the browser
def test_a_page_of_100000_characters_stays_responsive(browser, tmp_path):
    from selenium.webdriver.common.by import By

    rng = np.random.default_rng(0)
    vocab = Vocab(list(' abAB"\n'))
    text = "".join(rng.choice(vocab.to_list(), size=100_050, p=[.2, .3, .3, .05, .05, .03, .07]))
    model = tiny_model("lstm", layers=1, hidden=8, embed=3, vocab=len(vocab), dtype=np.float32)
    ins = inspect_text(model, vocab, text)
    page = tmp_path / "big.html"
    write_html(str(page), ins, find_units(ins), "big.safetensors")
    start = time.monotonic()
    open_page(browser, page)
    loaded = time.monotonic() - start
    assert browser.execute_script("return document.querySelectorAll('#text span').length") == 100_000
    assert "first 100,000 of 100,050 characters" in browser.find_element(By.ID, "notes").text
    elapsed = browser.execute_script(
        "const t = performance.now(); inspectPage.choose(0, 'c', 3);"
        "document.body.getBoundingClientRect(); return performance.now() - t")
    assert loaded < 30 and elapsed < 2000, (loaded, elapsed)
