"""A Foresight HTML report in a real browser: Debian's headless Chromium, driven by Selenium
through chromium-driver, opens it from a file:// URL (no network), fails on any console error,
takes a screenshot, checks that every arm's row shows the numbers of the run's summary.json, that
each verdict agrees with the tests' rejections, and that every chart has drawn content.

    report_browser.py REPORT.html SUMMARY.json SCREENSHOT.png
"""

import json
import pathlib
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

report, summary_file, screenshot = map(pathlib.Path, sys.argv[1:4])
summary = json.loads(summary_file.read_text())

options = Options()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1800"]:
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(report.resolve().as_uri())
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"
    driver.save_screenshot(str(screenshot))

    rows = 0
    for arm, sides in summary["arms"].items():
        for side in ("long", "short"):
            row = driver.find_element(By.CSS_SELECTOR, f'tr[data-arm="{arm}"][data-side="{side}"]')
            cell = lambda field: row.find_element(By.CSS_SELECTOR, f'td[data-field="{field}"]').text.strip()
            v = sides[side]
            assert int(cell("exceptions")) == v["exceptions"], (arm, side, cell("exceptions"))
            assert abs(float(cell("expected_exceptions")) - v["expected_exceptions"]) <= 0.05, (arm, side)
            assert abs(float(cell("kupiec_p")) - v["kupiec_p"]) <= 5e-4, (arm, side)
            assert abs(float(cell("christoffersen_cc_p")) - v["christoffersen_cc_p"]) <= 5e-4, (arm, side)
            # Percentages are shown with 2 decimals, ratios with 2: within half a last digit (and a hair).
            rise = lambda key: (v.get(key) or {}).get("abs")
            for field, value, scale, digits in [
                ("avg_margin", v.get("avg_margin"), 100, 2),
                ("max_rise_5d", rise("max_rise_5d"), 100, 2),
                ("max_rise_30d", rise("max_rise_30d"), 100, 2),
                ("mean_shortfall", v.get("mean_shortfall"), 100, 2),
                ("peak_to_trough", v.get("peak_to_trough"), 1, 2),
            ]:
                shown = cell(field)
                if value is None:
                    assert shown == "–", (arm, side, field, shown)
                else:
                    assert abs(float(shown.rstrip("%")) - scale * value) <= 0.501 * 10 ** -digits, (arm, side, field, shown, value)
            last, worst = (t.strip() for t in cell("traffic_light").split("/"))
            assert (last, worst) == (v["traffic_light"]["last_250"], v["traffic_light"]["worst_250"]), (arm, side)
            rows += 1
        rejected = any(sides[s][k] for s in ("long", "short") for k in ("kupiec_reject", "christoffersen_cc_reject")) or any(
            sides[s]["traffic_light"]["worst_250"] == "red" for s in ("long", "short")
        )
        verdict = driver.find_element(By.CSS_SELECTOR, f'li.verdict[data-arm="{arm}"]')
        assert ("fails" in verdict.get_attribute("class")) == rejected, (arm, verdict.text)

    charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == len(summary["arms"]), (len(charts), len(summary["arms"]))
    for chart in charts:
        drawn = driver.execute_script(
            "const price = arguments[0].querySelector('polyline.price').getBBox();"
            "const margin = arguments[0].querySelector('polyline.margin');"
            "return [price.width, price.height, margin.getBBox().width, margin.points.numberOfItems];",
            chart,
        )
        assert drawn[0] > 100 and drawn[1] > 10 and drawn[2] > 100 and drawn[3] >= 10, drawn
    images = driver.find_elements(By.CSS_SELECTOR, "img.chart")
    for image in images:
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
    print(f"ok: {rows} arm rows match summary.json, {len(charts)} charts and {len(images)} images drawn, no console error")
finally:
    driver.quit()
