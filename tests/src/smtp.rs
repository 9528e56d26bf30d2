//! The capturing SMTP server the test command starts on loopback
//! (`GROUNDWORK_SMTP_CAPTURE_PORT`), which writes each message it accepts to a file in
//! `GROUNDWORK_SMTP_CAPTURE_DIR`.

use std::path::PathBuf;
use std::time::Duration;

/// The server's port and its capture directory.
///
/// # Panics
/// If the test command did not start the server.
pub fn capture() -> (u16, PathBuf) {
    let port = std::env::var("GROUNDWORK_SMTP_CAPTURE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("GROUNDWORK_SMTP_CAPTURE_PORT is not set: run the tests with `./infra/test.sh`"));
    let dir = std::env::var("GROUNDWORK_SMTP_CAPTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| panic!("GROUNDWORK_SMTP_CAPTURE_DIR is not set: run the tests with `./infra/test.sh`"));
    (port, dir)
}

/// Waits for a captured message containing `needle`; returns its text.
///
/// # Panics
/// If none arrives within ten seconds.
pub async fn wait_for_message(dir: &std::path::Path, needle: &str) -> String {
    wait_for_file(dir, "eml", needle).await
}

/// Waits for a file with extension `ext` in `dir` whose text contains `needle`.
///
/// # Panics
/// If none appears within ten seconds.
pub async fn wait_for_file(dir: &std::path::Path, ext: &str, needle: &str) -> String {
    for _ in 0..100 {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == ext)
                    && let Ok(text) = std::fs::read_to_string(e.path())
                    && text.contains(needle)
                {
                    return text;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no .{ext} file containing {needle:?} appeared in {}", dir.display());
}
