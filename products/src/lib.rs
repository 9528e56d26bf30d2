//! The product's own functions, listed once. Everything that must know every product
//! function reads this list: the local stack mounts their routes ([`routes`]), the platform
//! function publishes their routes in `/openapi.json` ([`api`]), and the worker runs their
//! background jobs ([`jobs`]). `template.yaml` wires each function's own Lambda, and a test
//! keeps it in step with the API description.
//!
//! Each listed crate is a function crate with `routes(services)`, `api()` (from
//! `shared::function_routes!`) and `jobs(services)`. `cargo run -- new function <name>` adds
//! one, here and everywhere else it is needed (see ARCHITECTURE.md, "Adding a product
//! function").

use axum::Router;
use shared::jobs::ProductJobs;
use shared::services::Services;
use utoipa::openapi::OpenApi;

macro_rules! products {
    ($($function:ident),* $(,)?) => {
        /// The names of the product functions (their crates, `-` as `_`).
        pub const NAMES: &[&str] = &[$(stringify!($function)),*];

        /// Every product function's routes, merged, without the shared HTTP conventions
        /// (the local stack finishes them once, with Groundwork's).
        pub fn routes(services: &Services) -> Router {
            let _ = services; // with no product function listed
            Router::new()$(.merge($function::routes(services.clone())))*
        }

        /// Every product function's part of the OpenAPI document, by function.
        pub fn apis() -> Vec<(&'static str, OpenApi)> {
            vec![$((stringify!($function), $function::api())),*]
        }

        /// Every product function's part of the OpenAPI document, merged.
        pub fn api() -> OpenApi {
            let mut doc = OpenApi::default();
            for (_, part) in apis() {
                doc.merge(part);
            }
            doc
        }

        /// Every product function's job handlers.
        ///
        /// # Panics
        /// When two functions register one job name (at the first start: a programming
        /// error).
        pub fn jobs(services: &Services) -> ProductJobs {
            let _ = services; // with no product function listed
            ProductJobs::new()$(.merge($function::jobs(services.clone())))*
        }
    };
}

products! {
    projects,
    // groundwork:product-functions (`cargo run -- new function <name>` adds a line above)
}
