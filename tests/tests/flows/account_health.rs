//! Account health over simulated days: accounts with different activity are rolled up as
//! active, at risk and dormant; the operators list and read them; the dormant account's
//! owners and the owners of an account near a limit are emailed once each.

use serde_json::json;
use shared::account_health::{self, DAY_MS, HealthStatus};
use shared::product_events::ProductEvent;
use shared::store::{Item, Put};
use testkit::app::TestApp;

const OPERATOR: &str = "health-operator-token";

async fn account(app: &TestApp, owner: &str, name: &str) -> shared::id::AccountId {
    let (status, body) = app.call("POST", "/accounts", Some(owner), Some(json!({"name": name}))).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn event(app: &TestApp, account: shared::id::AccountId, user: &str, name: &str, at_ms: i64, flag: Option<&str>) {
    let mut event = ProductEvent::new(name, account, Some(user.parse().unwrap()), at_ms).unwrap();
    if let Some(flag) = flag {
        event = event.with("flag", flag).unwrap();
    }
    app.stack.services.store.transact(vec![event.op().unwrap()]).await.unwrap();
}

async fn health(app: &TestApp, account: shared::id::AccountId) -> account_health::AccountHealth {
    account_health::current(app.stack.services.store.as_ref(), account).await.unwrap().unwrap().health
}

#[tokio::test]
async fn a_rollup_over_simulated_days_sorts_accounts_by_risk_and_tells_owners_once() {
    let app =
        TestApp::spawn(&[("GROUNDWORK_OPERATOR_TOKEN", OPERATOR), ("GROUNDWORK_STAFF_EMAILS", "csm@health.test")])
            .await;
    let s = app.stack.services.clone();
    let (token, user) = app.user("csm-owner@health.test").await;
    let t0 = s.clock.now_ms();
    let busy = account(&app, &token, "Busy Co").await;
    let quiet = account(&app, &token, "Quiet Co").await;
    let gone = account(&app, &token, "=Gone Co").await;

    // 31 days on: Busy used the product yesterday (its first project an hour after it was
    // created), Quiet ten days ago, Gone never. Busy has used its free plan's one project.
    let now = t0 + 31 * DAY_MS;
    event(&app, busy, &user, "project.created", t0 + 3_600_000, None).await;
    event(&app, busy, &user, "feature.used", now - DAY_MS, Some("projects")).await;
    event(&app, busy, &user, "report.exported", now - DAY_MS, None).await;
    event(&app, quiet, &user, "report.exported", now - 10 * DAY_MS, None).await;
    let counter = Item::new(shared::keys::tenant_item(busy, "COUNTER", "projects")).with("count", 1);
    s.store.put(Put::new(counter)).await.unwrap();
    // Quiet pays for Starter: $20 a month.
    testkit::billing::subscribe(&s, quiet, "starter", 2000).await;

    let done = account_health::rollup(&s, now).await.unwrap();
    assert_eq!((done.accounts, done.dormant, done.upgrade_triggers), (3, 1, 1), "{done:?}");
    let b = health(&app, busy).await;
    assert_eq!(b.status, HealthStatus::Active);
    assert_eq!((b.events_7d, b.events_30d, b.active_users_30d), (2, 2, 1), "the value event is older than 30 days");
    // From the account's creation (just after t0) to the first project, an hour after t0.
    assert!(b.time_to_first_value_ms.is_some_and(|t| (3_590_000..=3_600_000).contains(&t)), "{b:?}");
    assert_eq!((b.features_7d.clone(), b.plan.as_str()), (vec!["projects".to_owned()], "free"));
    assert_eq!(b.limits["projects"], account_health::Usage { used: 1, allowed: 1 });
    assert_eq!(b.upgrade_suggested, ["projects"]);
    assert_eq!(b.payment, "none");
    assert_eq!(health(&app, quiet).await.status, HealthStatus::AtRisk);
    assert_eq!(health(&app, gone).await.status, HealthStatus::Dormant);

    // The operators' list: riskiest first, filtered, and as CSV.
    let (status, all) = app.call("GET", "/ops/accounts", Some(OPERATOR), None).await;
    assert_eq!(status, 200, "{all}");
    let names: Vec<&str> = all["accounts"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["=Gone Co", "Quiet Co", "Busy Co"]);
    let (_, dormant) = app.call("GET", "/ops/accounts?health=dormant", Some(OPERATOR), None).await;
    assert_eq!(dormant["accounts"].as_array().unwrap().len(), 1, "{dormant}");
    assert_eq!(dormant["accounts"][0]["account_id"], gone.to_string());
    let (status, refused) = app.call("GET", "/ops/accounts", Some(&token), None).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("not_staff")), "users are not staff: {refused}");
    let (staff, _) = app.user("csm@health.test").await;
    let (status, as_staff) = app.call("GET", "/ops/accounts", Some(&staff), None).await;
    assert_eq!((status, &as_staff["accounts"]), (200, &all["accounts"]), "staff read what operators read");

    // By revenue: Quiet's $20 a month first, then the rest by risk; in pages.
    let (_, by_mrr) = app.call("GET", "/ops/accounts?sort=mrr&limit=2", Some(&staff), None).await;
    let page: Vec<(&str, i64)> = by_mrr["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["mrr_minor"].as_i64().unwrap()))
        .collect();
    assert_eq!(page, [("Quiet Co", 2000), ("=Gone Co", 0)], "{by_mrr}");
    assert_eq!(by_mrr["accounts"][0]["currency"], "usd");
    let next = by_mrr["next_cursor"].as_str().unwrap();
    let (_, rest) = app.call("GET", &format!("/ops/accounts?sort=mrr&limit=2&cursor={next}"), Some(&staff), None).await;
    assert_eq!((rest["accounts"][0]["name"].as_str(), &rest["next_cursor"]), (Some("Busy Co"), &json!(null)), "{rest}");
    let (_, starter) = app.call("GET", "/ops/accounts?plan=starter", Some(&staff), None).await;
    assert_eq!(starter["accounts"].as_array().unwrap().len(), 1, "{starter}");
    for bad in ["plan=enterprise", "format=csv&cursor=mrr.1", "format=csv&limit=5", "sort=mrr&cursor=elsewhere"] {
        let (status, body) = app.call("GET", &format!("/ops/accounts?{bad}"), Some(&staff), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(["invalid_query", "invalid_cursor"].contains(&body["code"].as_str().unwrap()), "{bad}: {body}");
    }
    let csv =
        app.client.get(format!("{}/ops/accounts?format=csv", app.base)).bearer_auth(OPERATOR).send().await.unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("account_id,name,health,plan"));
    assert!(lines[1].contains(",'=Gone Co,dormant,free,"), "a name is never a formula: {csv}");
    let (status, detail) = app.call("GET", &format!("/ops/accounts/{busy}/health"), Some(OPERATOR), None).await;
    assert_eq!((status, detail["history"].as_array().unwrap().len()), (200, 1), "{detail}");
    let missing = format!("/ops/accounts/{}/health", shared::id::AccountId::new());
    assert_eq!(app.call("GET", &missing, Some(OPERATOR), None).await.0, 404);

    // Owners are told once: of the dormancy, and of the limit.
    assert_eq!(account_health::notify_dormant(&s).await.unwrap(), 1);
    assert_eq!(account_health::notify_dormant(&s).await.unwrap(), 0);
    let next_day = account_health::rollup(&s, now + DAY_MS).await.unwrap();
    assert_eq!(next_day.upgrade_triggers, 0, "once a month");
    assert_eq!(account_health::notify_dormant(&s).await.unwrap(), 0, "once per dormancy");
    // An earlier day filled in afterwards joins the history only: the latest record and the
    // dormancy stay, and nobody is told again.
    let latest = account_health::current(s.store.as_ref(), gone).await.unwrap().unwrap();
    account_health::rollup(&s, now - 5 * DAY_MS).await.unwrap();
    assert_eq!(account_health::current(s.store.as_ref(), gone).await.unwrap().unwrap(), latest);
    assert_eq!(account_health::notify_dormant(&s).await.unwrap(), 0, "not told again");
    let past = account_health::history(s.store.as_ref(), busy, 90).await.unwrap();
    let filled = past.iter().find(|h| h.day == account_health::day_of(now - 5 * DAY_MS)).expect("the earlier day");
    assert_eq!(filled.events_7d, 0, "events after that day are not counted in it: {filled:?}");
    let (_, detail) = app.call("GET", &format!("/ops/accounts/{busy}/health"), Some(OPERATOR), None).await;
    assert_eq!(detail["history"].as_array().unwrap().len(), 3, "a record a day: {detail}");
    app.drain().await;
    assert_eq!(app.emails("csm-owner@health.test", "=Gone Co").len(), 1);
    assert_eq!(app.emails("csm-owner@health.test", "of the 1 projects its plan allows").len(), 1);
    let events = shared::product_events::recent(s.store.as_ref(), busy, 50).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.name == "upgrade.suggested").count(), 1);

    // Activity again: no longer dormant, and a later dormancy would be told again.
    event(&app, gone, &user, "report.exported", now + DAY_MS, None).await;
    account_health::rollup(&s, now + 2 * DAY_MS).await.unwrap();
    assert_eq!(health(&app, gone).await.status, HealthStatus::Active);

    // A deleted account leaves the list at the next rollup.
    assert_eq!(app.call("DELETE", &format!("/accounts/{quiet}"), Some(&token), None).await.0, 200);
    account_health::rollup(&s, now + 3 * DAY_MS).await.unwrap();
    let (_, all) = app.call("GET", "/ops/accounts", Some(OPERATOR), None).await;
    assert_eq!(all["accounts"].as_array().unwrap().len(), 2, "{all}");
}
