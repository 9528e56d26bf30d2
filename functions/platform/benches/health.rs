//! `GET /health` through the full router (conventions, request context, store ping) on the
//! embedded store. Run: `cargo bench -p platform --bench health`.

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let services = rt.block_on(testkit::services::services(dir.path(), &[]));
    let app = platform::app(services);
    c.bench_function("health_through_router", |b| {
        b.to_async(&rt).iter(|| async {
            let res = app.clone().oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(res.status(), 200);
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
