//! The capturing SMTP server the test command starts on loopback
//! (`GROUNDWORK_SMTP_CAPTURE_PORT`), which writes each message it accepts to a file in
//! `GROUNDWORK_SMTP_CAPTURE_DIR`.

use std::path::PathBuf;

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
/// If none appears within [`crate::EVENTUALLY`].
pub async fn wait_for_file(dir: &std::path::Path, ext: &str, needle: &str) -> String {
    crate::eventually(&format!("a .{ext} file containing {needle:?} in {}", dir.display()), || async {
        let entries = std::fs::read_dir(dir).ok()?;
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == ext))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|text| text.contains(needle))
    })
    .await
}
