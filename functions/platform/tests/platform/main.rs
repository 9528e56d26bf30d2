//! The platform function's tests, one binary: its routes through real Lambda events, and the
//! operator routes.

mod lambda_events;
mod ops;
