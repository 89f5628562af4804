//! The HTML report of the README's quick start, opened in a real headless Chromium (Debian's,
//! installed by `.ci/run`; `COEBENCH_CHROMIUM` names another): every section and chart is in
//! the DOM Chromium built, nothing was fetched, and a screenshot is saved for people to look at
//! (`target/report-screenshots/quickstart.png`).

use std::path::{Path, PathBuf};
use std::process::Command;

use coebench_runner::analysis::report::SECTIONS;

fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("COEBENCH_CHROMIUM").map(PathBuf::from);
    let found = named.or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have Chromium: .ci/run installs Debian's chromium"
        );
        eprintln!("skipping: no Chromium (install Debian's chromium, or set COEBENCH_CHROMIUM)");
    }
    found
}

/// Chromium headless on `page` with `extra` arguments; returns (stdout, stderr).
fn headless(browser: &Path, page: &Path, profile: &Path, extra: &[String]) -> (String, String) {
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_quick_starts_report_opens_offline_in_chromium_with_every_section() {
    let Some(browser) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let status = Command::new(env!("CARGO_BIN_EXE_coebench"))
        .current_dir(dir.path())
        .args(["run", "--no-progress", "--run-name", "quickstart", "--plan"])
        .arg(root.join("examples/quickstart.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    let page = dir
        .path()
        .join("coebench-results/output_files/quickstart/report.html");
    assert!(page.is_file(), "the run wrote no report.html");
    let profile = dir.path().join("chromium-profile");
    let (dom, log) = headless(&browser, &page, &profile, &["--dump-dom".to_string()]);
    for id in SECTIONS {
        assert!(
            dom.contains(&format!("<section id=\"{id}\">")),
            "no section {id} in the DOM"
        );
    }
    assert_eq!(
        dom.matches("<tr class=\"row\">").count(),
        5,
        "one line per quick-start row"
    );
    assert_eq!(dom.matches("class=\"chart latency\"").count(), 5);
    assert!(dom.contains("class=\"chart timeline\""));
    // The 70B rows evict each other: the timeline marks switching requests.
    assert!(
        dom.contains("class=\"request switched\""),
        "no switching request marked"
    );
    assert!(
        !log.contains("Uncaught")
            && !log.contains("ERR_FILE_NOT_FOUND")
            && !log.contains("Failed to load"),
        "Chromium reported errors:\n{log}"
    );
    let shots = root.join("target/report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("quickstart.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &browser,
        &page,
        &profile,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,4000".to_string(),
            "--hide-scrollbars".to_string(),
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn a_report_with_a_baseline_has_the_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    for name in ["a", "b"] {
        let status = Command::new(env!("CARGO_BIN_EXE_coebench"))
            .current_dir(dir.path())
            .args(["run", "--no-progress", "--run-name", name, "--plan"])
            .arg(root.join("examples/quickstart.yaml"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let runs = dir.path().join("coebench-results/output_files");
    let out = dir.path().join("b-vs-a.html");
    let status = Command::new(env!("CARGO_BIN_EXE_coebench"))
        .arg("report")
        .arg(runs.join("b"))
        .arg("--baseline")
        .arg(runs.join("a"))
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.contains("<section id=\"comparison\"><h2>Compared with a</h2>"),
        "no comparison"
    );
    assert!(html.matches("<td>ttft p50</td>").count() >= 5);
}
