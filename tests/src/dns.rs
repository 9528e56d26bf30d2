//! The authoritative DNS server the test command starts on loopback
//! (`infra/dns_server.py`): its TXT records are files in `GROUNDWORK_DNS_TEST_ZONE_DIR`, and
//! Groundwork asks it when `GROUNDWORK_DNS_RESOLVER` is [`server`].

use std::path::PathBuf;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with `./infra/test.sh`"))
}

/// The server's address, `127.0.0.1:<port>`, for `GROUNDWORK_DNS_RESOLVER`.
///
/// # Panics
/// If the test command did not start the server.
pub fn server() -> String {
    var("GROUNDWORK_DNS_TEST_SERVER")
}

fn file(name: &str) -> PathBuf {
    PathBuf::from(var("GROUNDWORK_DNS_TEST_ZONE_DIR")).join(name.trim_end_matches('.').to_ascii_lowercase())
}

/// Publishes `values` as the TXT records of `name` (replacing what it had).
///
/// # Panics
/// If the file cannot be written.
pub fn set_txt(name: &str, values: &[&str]) {
    std::fs::write(file(name), values.join("\n")).expect("the zone file is written");
}

/// Makes questions about `name` fail (SERVFAIL), as a broken zone does.
///
/// # Panics
/// If the file cannot be written.
pub fn fail(name: &str) {
    std::fs::write(file(name), "!SERVFAIL").expect("the zone file is written");
}
