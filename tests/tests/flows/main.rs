//! Cross-function flows through the whole local stack (and the loopback peers the test
//! command starts): one test binary, so the stack is linked once.

mod abuse;
mod account_health;
mod auth_flows;
mod auth_hardening;
mod auth_keys;
mod billing;
mod billing_seats;
mod browser_session;
mod cloud;
mod cors;
mod deploy_rollback;
mod domains;
mod email;
mod exports_s3;
mod fault_journeys;
mod flags;
mod health;
mod jobs;
mod oidc;
mod outages;
mod product_events;
mod rate_limits;
mod rent_auth;
mod saml;
mod scim;
mod template_routes;
mod tenancy;
mod webhooks;
