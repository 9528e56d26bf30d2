//! The example product function through the whole local stack: the flag gate, the plan
//! limit, CRUD with pagination, the bin, audit and product events, and its background job
//! on the product jobs path.

use serde_json::{Value, json};
use testkit::app::TestApp;

const OPERATOR: &str = "operator-token-for-projects-0123456789";

/// The shipped catalogue, with room for three projects on the free plan.
fn plans_file(dir: &std::path::Path) -> String {
    testkit::services::plans_file_with(
        dir,
        "limits = { seats = 3, projects = 1,",
        "limits = { seats = 3, projects = 3,",
    )
}

fn names(page: &Value) -> Vec<String> {
    page["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn an_accounts_projects_behind_a_flag_and_the_plans_limit() {
    let plans = tempfile::tempdir().unwrap();
    let plans_path = plans_file(plans.path());
    let app = TestApp::spawn(&[("GROUNDWORK_OPERATOR_TOKEN", OPERATOR), ("GROUNDWORK_PLANS_FILE", &plans_path)]).await;
    let (owner, _) = app.user("owner@projects.test").await;
    let (_, account) = app.call("POST", "/accounts", Some(&owner), Some(json!({"name": "Acme"}))).await;
    let acme = account["id"].as_str().unwrap().to_owned();
    let base = format!("/accounts/{acme}/projects");

    // The flag is off until an operator defines it.
    let (status, problem) = app.call("POST", &base, Some(&owner), Some(json!({"name": "Website"}))).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("feature_disabled")), "{problem}");
    let flag = json!({"description": "projects", "enabled": true, "rollout_percent": 100});
    assert_eq!(app.call("PUT", "/ops/flags/projects", Some(OPERATOR), Some(flag)).await.0, 200);

    // Create up to the plan's limit; the next one answers 402 naming the limit and the upgrade.
    let mut ids = Vec::new();
    for name in ["Website", "Mobile app", "Launch"] {
        let (status, project) = app.call("POST", &base, Some(&owner), Some(json!({"name": name}))).await;
        assert_eq!(status, 201, "{project}");
        assert_eq!(project["name"], name);
        ids.push(project["id"].as_str().unwrap().to_owned());
    }
    let (status, problem) = app.call("POST", &base, Some(&owner), Some(json!({"name": "One too many"}))).await;
    assert_eq!(status, 402, "{problem}");
    assert_eq!(problem["code"], "plan_limit");
    assert_eq!(problem["limit"], "projects");
    assert_eq!(problem["allowed"], 3);
    assert_eq!(problem["upgrade"], format!("/accounts/{acme}/billing/checkout"));

    // Bad input is refused and loses nothing.
    for bad in [json!({"name": "  "}), json!({"name": "x".repeat(101)}), json!({"name": "ok", "owner": "me"})] {
        let status = app.call("PATCH", &format!("{base}/{}", ids[0]), Some(&owner), Some(bad.clone())).await.0;
        assert!(status == 422 || status == 400, "{bad}: {status}");
    }

    // Pages of two, oldest first.
    let (status, first) = app.call("GET", &format!("{base}?limit=2"), Some(&owner), None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(names(&first), ["Website", "Mobile app"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = app.call("GET", &format!("{base}?limit=2&cursor={cursor}"), Some(&owner), None).await;
    assert_eq!(names(&second), ["Launch"]);

    // Read and update.
    let one = format!("{base}/{}", ids[0]);
    let (status, project) = app.call("PATCH", &one, Some(&owner), Some(json!({"name": "Website v2"}))).await;
    assert_eq!((status, project["name"].as_str()), (200, Some("Website v2")), "{project}");
    let (_, project) = app.call("GET", &one, Some(&owner), None).await;
    assert_eq!(project["name"], "Website v2");
    let unknown = format!("{base}/01J00000000000000000000000");
    assert_eq!(app.call("GET", &unknown, Some(&owner), None).await.0, 404);

    // Soft delete: gone from reads, in the bin, and its room is free again.
    assert_eq!(app.call("DELETE", &one, Some(&owner), None).await.0, 204);
    assert_eq!(app.call("GET", &one, Some(&owner), None).await.0, 404);
    assert_eq!(app.call("DELETE", &one, Some(&owner), None).await.0, 404);
    let (_, bin) = app.call("GET", &format!("{base}?deleted=true"), Some(&owner), None).await;
    assert_eq!(names(&bin), ["Website v2"]);
    assert!(bin["projects"][0]["deleted_at_ms"].is_i64(), "{bin}");
    let (status, _) = app.call("POST", &base, Some(&owner), Some(json!({"name": "Docs"}))).await;
    assert_eq!(status, 201);
    // Full again: the restore waits for room.
    let (status, problem) = app.call("POST", &format!("{one}/restore"), Some(&owner), None).await;
    assert_eq!((status, problem["code"].as_str()), (402, Some("plan_limit")), "{problem}");
    assert_eq!(app.call("DELETE", &format!("{base}/{}", ids[1]), Some(&owner), None).await.0, 204);
    let (status, restored) = app.call("POST", &format!("{one}/restore"), Some(&owner), None).await;
    assert_eq!((status, restored["name"].as_str()), (200, Some("Website v2")), "{restored}");
    assert!(restored.get("deleted_at_ms").is_none(), "{restored}");
    let (status, problem) = app.call("POST", &format!("{one}/restore"), Some(&owner), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("not_deleted")));

    // Every change is in the account's audit log.
    let (_, audit) = app.call("GET", &format!("/accounts/{acme}/audit?limit=100"), Some(&owner), None).await;
    let actions: Vec<&str> =
        audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["project.created", "project.updated", "project.deleted", "project.restored"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // ...and a product event for the customer-success layer, with ids only.
    let account_id = acme.parse().unwrap();
    let events = shared::product_events::recent(app.stack.services.store.as_ref(), account_id, 50).await.unwrap();
    let event_names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(event_names.iter().filter(|n| **n == "project.created").count(), 4, "{event_names:?}");
    assert!(event_names.contains(&"project.deleted") && event_names.contains(&"project.restored"));
    // Every route went through the flag: its use is one `feature.used` a day, not one a request.
    let used: Vec<_> = events.iter().filter(|e| e.name == "feature.used").collect();
    assert_eq!(used.len(), 1, "{event_names:?}");
    assert_eq!(used[0].properties["flag"], projects::FLAG);
    assert!(
        events
            .iter()
            .filter(|e| e.name.starts_with("project."))
            .all(|e| e.user_id.is_some() && e.properties.contains_key("project_id"))
    );

    // The background job (a product job, run by the worker) repairs a count that drifted.
    app.drain().await;
    let store = app.stack.services.store.as_ref();
    let counter = shared::keys::tenant_item(account_id, "COUNTER", projects::LIMIT);
    let mut drifted = store.get(&counter).await.unwrap().expect("the count");
    assert_eq!(drifted.data["count"], 3, "three live projects");
    drifted.data.insert("count".into(), json!(0));
    store.put(shared::store::Put::new(drifted).if_unchanged()).await.unwrap();
    // Any change stages the recount; with the count at 0 a delete gives nothing back.
    assert_eq!(app.call("DELETE", &format!("{base}/{}", ids[2]), Some(&owner), None).await.0, 204);
    app.drain().await;
    let repaired = store.get(&counter).await.unwrap().unwrap();
    assert_eq!(repaired.data["count"], 2, "recounted: two live projects");
    app.stack.stop().await;
}

#[tokio::test]
async fn roles_decide_who_reads_and_who_writes() {
    let app = TestApp::spawn(&[("GROUNDWORK_OPERATOR_TOKEN", OPERATOR)]).await;
    let flag = json!({"enabled": true, "rollout_percent": 100});
    assert_eq!(app.call("PUT", "/ops/flags/projects", Some(OPERATOR), Some(flag)).await.0, 200);
    let (owner, _) = app.user("owner@roles.test").await;
    let (_, account) = app.call("POST", "/accounts", Some(&owner), Some(json!({"name": "Roles"}))).await;
    let acme = account["id"].as_str().unwrap().to_owned();
    let base = format!("/accounts/{acme}/projects");
    // API keys act with their role: a read-only key reads, a member key writes.
    let key = |role: &'static str| {
        let (app, owner, acme) = (&app, owner.clone(), acme.clone());
        async move {
            let body = json!({"name": role, "role": role});
            let (status, key) = app.call("POST", &format!("/accounts/{acme}/api-keys"), Some(&owner), Some(body)).await;
            assert_eq!(status, 201, "{key}");
            key["secret"].as_str().unwrap().to_owned()
        }
    };
    let (reader, writer, biller) = (key("read_only").await, key("member").await, key("billing").await);
    let (status, created) = app.call("POST", &base, Some(&writer), Some(json!({"name": "By a key"}))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(app.call("GET", &base, Some(&reader), None).await.0, 200);
    assert_eq!(app.call("POST", &base, Some(&reader), Some(json!({"name": "No"}))).await.0, 403);
    // The billing role manages billing, not the product's data.
    assert_eq!(app.call("GET", &base, Some(&biller), None).await.0, 403);
    app.stack.stop().await;
}
