//! The deep health check on the local stack: every dependency named, checked, with each
//! queue's backlog.

use serde_json::json;
use shared::clock::{Clock as _, ManualClock};
use testkit::app::TestApp;

#[tokio::test]
async fn the_deep_health_check_reports_every_dependency_with_its_backlog() {
    let clock = ManualClock::at(shared::clock::SystemClock.now_ms());
    let operator = "operator-token-for-the-deep-health-test";
    let app =
        TestApp::spawn_with_clock(&[("GROUNDWORK_OPERATOR_TOKEN", operator)], std::sync::Arc::new(clock.clone())).await;
    // Anyone: statuses and latencies only.
    let (status, public) = app.call("GET", "/health/deep", None, None).await;
    assert_eq!((status, public["status"].as_str()), (200, Some("ok")), "{public}");
    assert!(
        public["queues"]["jobs"]["latency_ms"].is_u64() && public["queues"]["jobs"]["backlog"].is_null(),
        "{public}"
    );
    // The operator: backlogs too.
    let (status, report) = app.call("GET", "/health/deep", Some(operator), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["status"].as_str(), report["release"].as_str()), (Some("ok"), Some(shared::RELEASE)));
    assert_eq!(report["store"]["status"], "ok");
    assert_eq!(report["signing_keys"]["status"], "ok");
    for queue in ["email", "mail-events", "jobs", "billing"] {
        assert_eq!(report["queues"][queue]["status"], "ok", "{queue}: {report}");
        assert!(report["queues"][queue]["latency_ms"].is_u64());
        assert!(report["queues"][queue]["backlog"]["dead_letters"].is_u64(), "{queue}: {report}");
    }
    // A parked job shows in its queue's dead letters, once the report of 10 s ago is stale.
    let jobs = app.stack.services.queues.get(shared::config::QueueName::Jobs);
    jobs.send_to_dead_letters(&json!({"kind": "nothing"}).to_string(), None).await.unwrap();
    let (_, report) = app.call("GET", "/health/deep", Some(operator), None).await;
    assert_eq!(report["queues"]["jobs"]["backlog"]["dead_letters"], 0, "reused: {report}");
    clock.advance_ms(10_001);
    let (_, report) = app.call("GET", "/health/deep", Some(operator), None).await;
    assert_eq!(report["queues"]["jobs"]["backlog"]["dead_letters"], 1, "{report}");
}
