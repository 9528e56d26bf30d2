//! Test support shared by every crate's tests, and home of the cross-function integration
//! tests (`tests/tests/`).
//!
//! - [`moto`]: clients for the DynamoDB/SQS API server the test command starts on loopback,
//!   with a fresh table or queue per test;
//! - [`runtime_api`]: a Lambda Runtime API stub, to run a function's real bootstrap binary;
//! - [`store_contract`] and [`queue_contract`]: the contract suites every adapter passes,
//!   instantiated per adapter with [`store_contract_suite!`] and [`queue_contract_suite!`];
//! - [`events`]: real Lambda event payloads from `tests/data/`;
//! - [`smtp`]: the capturing SMTP server the test command starts.

pub mod events;
pub mod moto;
pub mod queue_contract;
pub mod runtime_api;
pub mod smtp;
pub mod store_contract;

/// A fixed start time for manual clocks (2027-01-15T08:00:00Z).
pub const T0_MS: i64 = 1_800_000_000_000;
