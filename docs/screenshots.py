"""The pictures of the README and the docs, made from a `make run` (run by `make screenshots`):

- docs/images/mlflow_runs.png: MLflow's runs table of this checkout's store, in headless
  Chromium (Debian's chromium + chromium-driver);
- docs/images/confusion_champion.png: the FER2013 champion's confusion matrices, as its
  evaluate stage drew them;
- docs/images/live_page.png: the live page, from its browser test (tests/test_live.py).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def champion_confusion() -> Path:
    """The confusion matrices of the model the FER2013 gate made champion."""
    promotion = json.loads((ROOT / "reports/registry/fer2013_promotion.json").read_text())
    register = json.loads((ROOT / "reports/registry/fer2013_register.json").read_text())
    version = str(promotion["champion_after"])
    model = next(m for m, v in register["versions"].items() if str(v["version"]) == version)
    source = ROOT / "reports/evaluate/fer2013" / model / "confusion.png"
    return Path(shutil.copy(source, IMAGES / "confusion_champion.png"))


# The evaluate runs' headline metrics, as columns of the runs table.
RUN_COLUMNS = (
    "val/recall_angry_at_threshold",
    "test/accuracy",
    "test/recall_angry_at_threshold",
    "test/precision_angry_at_threshold",
    "deployed/decide/recall_angry",
)


def show_columns(driver, titles: tuple[str, ...]) -> None:
    """Close the assistant panel and tick metric columns in the table's Columns menu."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        button.click()
    menu = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Columns"]
    menu[0].click()
    time.sleep(2)
    for title in titles:
        node = driver.find_elements(By.CSS_SELECTOR, f"span[title='{title}']")[0]
        driver.execute_script("arguments[0].scrollIntoView(); arguments[0].click()", node)
        time.sleep(0.5)
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    time.sleep(2)


def mlflow_runs() -> Path:
    """The runs table in headless Chromium, at the link `emowatch info` prints."""
    sys.path.insert(0, str(ROOT))
    from omegaconf import OmegaConf
    from tests.test_live import headless_chromium

    from emowatch.cli.registry import runs_page

    port = free_port()
    uri = f"sqlite:///{ROOT / 'mlflow.db'}"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        cfg = OmegaConf.load(ROOT / "params.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            driver = headless_chromium(Path(tmp))
            try:
                driver.set_window_size(1900, 700)
                only = urllib.parse.quote("attributes.run_name LIKE 'evaluate-%'")
                driver.get(runs_page(cfg, uri, base) + f"&searchFilter={only}")
                time.sleep(15)  # the UI renders the table client-side
                show_columns(driver, RUN_COLUMNS)
                path = IMAGES / "mlflow_runs.png"
                driver.save_screenshot(str(path))
            finally:
                driver.quit()
        return path
    finally:
        server.terminate()
        server.wait(timeout=30)


def live_page() -> Path:
    path = IMAGES / "live_page.png"
    env = dict(os.environ, EMOWATCH_SCREENSHOT=str(path))
    test = "tests/test_live.py::test_live_page_shows_alert_and_records_acknowledgement_in_chromium"
    subprocess.run([sys.executable, "-m", "pytest", "-q", test], cwd=ROOT, env=env, check=True)
    return path


if __name__ == "__main__":
    for made in (champion_confusion(), mlflow_runs(), live_page()):
        print("wrote", made.relative_to(ROOT))
