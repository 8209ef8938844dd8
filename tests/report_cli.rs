//! `foresight report`: the HTML page of a backtest, checked in a real browser (Debian's headless
//! Chromium through Selenium, installed by the bootstrap): no console error, every arm's row as
//! in summary.json, verdicts that agree with the tests, charts drawn. And a folder that holds no
//! run is refused with the reason.

use std::process::Command;

use crate::util::{data, foresight, foresight_ok, root};

#[test]
fn a_backtest_report_opens_in_chromium_with_the_runs_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    foresight_ok(&[
        "backtest",
        "--data",
        data("btc_usdt_1d.csv").to_str().unwrap(),
        "--calibrator",
        "static:0.1,ewma,hs:250,hs:250+buffer:0.25",
        "--out",
        run.to_str().unwrap(),
    ]);
    let html = dir.path().join("report.html");
    let out = foresight_ok(&["report", "--from", run.to_str().unwrap(), "--out", html.to_str().unwrap()]);
    assert!(out.contains("self-contained"), "{out}");
    let text = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing is fetched at view time.
    for remote in ["src=\"http", "href=\"http", "url(http", "<script src", "<link "] {
        assert!(!text.contains(remote), "the report loads {remote}…");
    }
    assert!(text.contains("data:image/png;base64,") && text.contains("git commit") && text.contains("data sha256"));

    let python = root().join(".venv/bin/python");
    let screenshot = dir.path().join("report.png");
    let checked = Command::new(&python)
        .arg(root().join("tests/clients/report_browser.py"))
        .args([&html, &run.join("summary.json"), &screenshot])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success(), "the browser check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok: 8 arm rows match summary.json, 4 charts"), "{stdout}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 20_000, "the screenshot is empty");
}

#[test]
fn a_folder_without_a_run_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = foresight(&["report", "--from", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds no summary.json"), "{stderr}");
}
