//! Product events through the local stack: the lifecycle events Groundwork's flows record
//! in the account's partition, and the batch a frontend sends.

use serde_json::{Value, json};
use testkit::app::TestApp;

async fn names(app: &TestApp, account: &str) -> Vec<String> {
    let events =
        shared::product_events::recent(app.stack.services.store.as_ref(), account.parse().unwrap(), 100).await.unwrap();
    events.into_iter().map(|e| e.name).collect()
}

#[tokio::test]
async fn flows_record_lifecycle_events_and_a_frontend_sends_its_own_in_batches() {
    // Stopped at the start of a minute, so the per-minute limit's window is this test's.
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let clock = shared::clock::ManualClock::at(start - start % 60_000);
    let app = TestApp::spawn_with_clock(&[], std::sync::Arc::new(clock.clone())).await;
    let (owner, owner_id) = app.user("owner@events.test").await;
    let (_, account) = app.call("POST", "/accounts", Some(&owner), Some(json!({"name": "Events"}))).await;
    let account = account["id"].as_str().unwrap().to_owned();
    assert_eq!(names(&app, &account).await, ["account.created"]);

    // An invitation and its acceptance.
    let invite = json!({"email": "member@events.test", "role": "member"});
    assert_eq!(app.call("POST", &format!("/accounts/{account}/invitations"), Some(&owner), Some(invite)).await.0, 201);
    let (member, _) = app.user("member@events.test").await;
    let token = app.token_from_email("member@events.test", "invited you to").await;
    let (status, body) = app.call("POST", "/invitations/accept", Some(&member), Some(json!({"token": token}))).await;
    assert_eq!(status, 200, "{body}");
    let store = app.stack.services.store.as_ref();
    let events = shared::product_events::recent(store, account.parse().unwrap(), 100).await.unwrap();
    let joined = events.iter().find(|e| e.name == "member.joined").expect("member.joined");
    assert_eq!(
        (joined.properties["via"].as_str(), joined.properties["role"].as_str()),
        (Some("invitation"), Some("member"))
    );
    let invited = events.iter().find(|e| e.name == "member.invited").expect("member.invited");
    assert_eq!(invited.user_id.map(|u| u.to_string()), Some(owner_id.clone()));

    // The frontend's batch: recorded under the caller, once per client id.
    let path = format!("/accounts/{account}/events");
    let now = app.stack.services.clock.now_ms();
    let batch = json!({"events": [
        {"name": "report.exported", "id": "r-1", "at_ms": now - 1000,
         "properties": {"format": "csv", "rows": 120, "scheduled": false}},
        {"name": "dashboard.viewed"},
    ]});
    for _ in 0..2 {
        let (status, body) = app.call("POST", &path, Some(&member), Some(batch.clone())).await;
        assert_eq!((status, body["accepted"].as_u64()), (202, Some(2)), "{body}");
    }
    // The same occurrence twice in a batch, and a retry that changed its properties: the
    // first version stays.
    let changed = json!({"events": [
        {"name": "report.exported", "id": "r-1", "at_ms": now - 1000, "properties": {"format": "pdf"}},
        {"name": "report.exported", "id": "r-1", "at_ms": now - 1000, "properties": {"format": "xls"}},
    ]});
    assert_eq!(app.call("POST", &path, Some(&member), Some(changed)).await.0, 202);
    let all = names(&app, &account).await;
    assert_eq!(all.iter().filter(|n| *n == "report.exported").count(), 1, "a retry with the same id: {all:?}");
    let events = shared::product_events::recent(store, account.parse().unwrap(), 100).await.unwrap();
    let exported = events.iter().find(|e| e.name == "report.exported").unwrap();
    assert_eq!(exported.properties["format"], "csv", "the first version stays");
    assert_eq!(all.iter().filter(|n| *n == "dashboard.viewed").count(), 2, "no id, two occurrences: {all:?}");

    // What does not fit refuses the whole batch, and records nothing.
    let before = names(&app, &account).await.len();
    let long = "x".repeat(257);
    let too_many: Vec<Value> = (0..51).map(|_| json!({"name": "a.b"})).collect();
    for (events, code) in [
        (json!([{"name": "account.created"}]), "reserved_event_name"),
        (json!([{"name": "Report.Exported"}]), "invalid_event_name"),
        (json!([{"name": "report"}]), "invalid_event_name"),
        (json!([{"name": "a.b", "at_ms": now - 25 * 3_600_000}]), "invalid_event"),
        (json!([{"name": "a.b", "at_ms": now + 3_600_000}]), "invalid_event"),
        (json!([{"name": "a.b", "properties": {"nested": {"x": 1}}}]), "invalid_event"),
        (json!([{"name": "a.b", "properties": {"Bad Key": 1}}]), "invalid_event"),
        (json!([{"name": "a.b", "properties": {"long": long}}]), "invalid_event"),
        (json!([{"name": "a.b", "id": "not ok", "at_ms": now}]), "invalid_event"),
        (json!([{"name": "a.b", "id": "no-time"}]), "invalid_event"),
        (json!([{"name": "a.b", "properties": {"big": 1e308}}]), "invalid_event"),
        (json!([{"name": "a.b", "properties": {"big": 9_007_199_254_740_993_u64}}]), "invalid_event"),
        (json!([{"name": "a.b", "properties": {"small": -9_007_199_254_740_993_i64}}]), "invalid_event"),
        (json!([{"name": "a.b", "properties": {"contact": "Write to bob@example.com"}}]), "personal_data"),
        (json!([{"name": "a.b"}, {"name": "member.joined"}]), "reserved_event_name"),
        (json!([]), "invalid_batch"),
        (Value::Array(too_many), "invalid_batch"),
    ] {
        let (status, body) = app.call("POST", &path, Some(&member), Some(json!({"events": events}))).await;
        assert_eq!((status, body["code"].as_str()), (422, Some(code)), "{events}: {body}");
    }
    assert_eq!(names(&app, &account).await.len(), before);

    // Past the account's events per minute, a batch is refused whole and nothing recorded;
    // the next minute takes events again.
    clock.advance_ms(60_000);
    let recorded = || async {
        shared::product_events::recent(app.stack.services.store.as_ref(), account.parse().unwrap(), 1_000)
            .await
            .unwrap()
            .len()
    };
    let before = recorded().await;
    let fifty = json!({"events": (0..50).map(|_| json!({"name": "page.viewed"})).collect::<Vec<_>>()});
    let limit = tenancy::product_events::EVENTS_PER_ACCOUNT.max as usize;
    let mut sent = 0;
    let mut refused = None;
    for _ in 0..=limit / 50 {
        let (status, body) = app.call("POST", &path, Some(&member), Some(fifty.clone())).await;
        if status == 429 {
            refused = Some(body);
            break;
        }
        assert_eq!(status, 202, "{body}");
        sent += 50;
    }
    let refused = refused.expect("a 429 past the limit");
    assert_eq!(refused["code"], "event_rate_limited", "{refused}");
    assert!(refused["retry_after"].as_u64().is_some_and(|s| (1..=60).contains(&s)), "{refused}");
    assert!(sent <= limit && sent + 50 > limit, "{sent} accepted of {limit}");
    assert_eq!(recorded().await - before, sent, "the refused batch left nothing");
    clock.advance_ms(61_000);
    assert_eq!(app.call("POST", &path, Some(&member), Some(json!({"events": [{"name": "a.b"}]}))).await.0, 202);

    // Someone outside the account is not told it exists.
    let (stranger, _) = app.user("stranger@events.test").await;
    assert_eq!(app.call("POST", &path, Some(&stranger), Some(batch)).await.0, 404);
}

#[tokio::test]
async fn events_reach_posthog_with_the_account_as_a_group_once_retried_and_dead_lettered() {
    use shared::product_events::posthog::{self, Forwarded, Forwarder};
    let stand_in = testkit::posthog::PostHogStandIn::start().await;
    let app = TestApp::spawn(&[
        ("POSTHOG_API_KEY", testkit::posthog::API_KEY),
        ("POSTHOG_HOST", &stand_in.host),
        ("GROUNDWORK_OPERATOR_TOKEN", "events-operator"),
    ])
    .await;
    let (owner, owner_id) = app.user("owner@forwarded.test").await;
    let (_, account) = app.call("POST", "/accounts", Some(&owner), Some(json!({"name": "Forwarded Inc"}))).await;
    let account = account["id"].as_str().unwrap().to_owned();
    let batch =
        json!({"events": [{"name": "report.exported", "properties": {"format": "csv"}}, {"name": "dashboard.viewed"}]});
    assert_eq!(app.call("POST", &format!("/accounts/{account}/events"), Some(&owner), Some(batch)).await.0, 202);

    let s = &app.stack.services;
    // The account pays for Starter, $20 a month: its MRR is a group property.
    testkit::billing::subscribe(s, account.parse().unwrap(), "starter", 2000).await;
    let http = shared::outbound::client(posthog::TIMEOUT).unwrap();
    let forwarder = Forwarder { store: s.store.as_ref(), plans: &s.plans, config: &s.config.posthog, http: &http };

    // PostHog is down: nothing is lost, the events wait for the next run.
    stand_in.answer(&[503]);
    let done = posthog::forward(&forwarder).await.unwrap();
    assert_eq!((done.sent, done.deferred), (0, 1), "{done:?}");
    assert!(stand_in.batches().is_empty());

    // Back up: every event once, the person an id, the account the `company` group.
    let done = posthog::forward(&forwarder).await.unwrap();
    assert_eq!(done, Forwarded { sent: 3, dead_lettered: 0, deferred: 0 });
    assert!(stand_in.malformed().is_empty(), "{:?}", stand_in.malformed());
    let events = stand_in.events();
    let mut sent_names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    sent_names.sort_unstable();
    assert_eq!(sent_names, ["$groupidentify", "account.created", "dashboard.viewed", "report.exported"]);
    for e in events.iter().filter(|e| e["event"] != "$groupidentify") {
        assert_eq!(e["distinct_id"], owner_id.as_str(), "{e}");
        assert_eq!(e["properties"]["$groups"]["company"], account.as_str(), "{e}");
    }
    let group = events.iter().find(|e| e["event"] == "$groupidentify").unwrap();
    assert_eq!(group["properties"]["$group_key"], account.as_str());
    let set = &group["properties"]["$group_set"];
    assert_eq!(
        (set["name"].as_str(), set["plan"].as_str(), set["seats"].as_u64()),
        (Some("Forwarded Inc"), Some("starter"), Some(1))
    );
    assert_eq!((set["mrr"].as_f64(), set["currency"].as_str()), (Some(20.0), Some("usd")), "{set}");
    let sent = serde_json::to_string(&stand_in.batches()).unwrap();
    assert!(!sent.contains("owner@forwarded.test"), "ids only, never the address: {sent}");

    // Forwarded events are not sent again.
    assert_eq!(posthog::forward(&forwarder).await.unwrap(), Forwarded::default());

    // A batch PostHog refuses goes to the dead-letter index instead of blocking the rest.
    let one = json!({"events": [{"name": "widget.added"}]});
    assert_eq!(app.call("POST", &format!("/accounts/{account}/events"), Some(&owner), Some(one)).await.0, 202);
    stand_in.answer(&[400]);
    assert_eq!(posthog::forward(&forwarder).await.unwrap().dead_lettered, 1);
    assert_eq!(posthog::forward(&forwarder).await.unwrap(), Forwarded::default());
    assert_eq!(posthog::dead_lettered(s.store.as_ref(), 10).await.unwrap(), 1);
    // Recording an event still records it in Groundwork, forwarded or not.
    assert!(names(&app, &account).await.contains(&"widget.added".to_owned()));

    // The operator sees it with the dead letters, and once the cause is fixed sends it again.
    let operator = Some("events-operator");
    let (status, listed) = app.call("GET", "/ops/dead-letters?queue=product-events", operator, None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["dead_letters"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        (listed["dead_letters"][0]["queue"].as_str(), listed["dead_letters"][0]["kind"].as_str()),
        (Some("product-events"), Some("widget.added"))
    );
    let (status, redriven) =
        app.call("POST", "/ops/dead-letters/redrive", operator, Some(json!({"queue": "product-events"}))).await;
    assert_eq!((status, &redriven["redriven"]["product-events"]), (200, &json!(1)), "{redriven}");
    assert_eq!(posthog::dead_lettered(s.store.as_ref(), 10).await.unwrap(), 0);
    let before = stand_in.events().len();
    assert_eq!(posthog::forward(&forwarder).await.unwrap(), Forwarded { sent: 1, dead_lettered: 0, deferred: 0 });
    let again: Vec<Value> = stand_in.events().into_iter().skip(before).collect();
    assert!(again.iter().any(|e| e["event"] == "widget.added"), "{again:?}");
    assert_eq!(
        app.call("POST", "/ops/dead-letters/redrive", operator, Some(json!({}))).await.1["redriven"]["product-events"],
        0
    );
}
