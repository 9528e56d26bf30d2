//! Feature flags on the local stack: operators define flags and overrides over `/ops/flags`;
//! each account reads its evaluated flags at `/accounts/{id}/flags`.

use serde_json::json;
use testkit::app::TestApp;

const OPERATOR: &str = "operator-token-for-tests-0123456789";

#[tokio::test]
async fn operators_define_flags_and_accounts_read_them_evaluated() {
    let app = TestApp::spawn(&[("GROUNDWORK_OPERATOR_TOKEN", OPERATOR)]).await;
    let (ada, _) = app.user("ada@example.com").await;
    let (_, account) = app.call("POST", "/accounts", Some(&ada), Some(json!({"name": "Acme"}))).await;
    let acme = account["id"].as_str().unwrap().to_owned();

    // Only operators manage flags.
    let gated = json!({"description": "the new editor", "enabled": true, "plans": ["team"], "rollout_percent": 100});
    assert_eq!(app.call("PUT", "/ops/flags/new_editor", None, Some(gated.clone())).await.0, 401);
    assert_eq!(app.call("PUT", "/ops/flags/new_editor", Some(&ada), Some(gated.clone())).await.0, 401);
    let (status, body) = app.call("PUT", "/ops/flags/new_editor", Some(OPERATOR), Some(gated)).await;
    assert_eq!(status, 200, "{body}");
    let ab = json!({"enabled": true, "rollout_percent": 100,
                    "variants": [{"name": "control", "weight": 1}, {"name": "treatment", "weight": 1}]});
    assert_eq!(app.call("PUT", "/ops/flags/checkout_copy", Some(OPERATOR), Some(ab)).await.0, 200);
    let bad = json!({"enabled": true, "rollout_percent": 101});
    let (status, body) = app.call("PUT", "/ops/flags/x", Some(OPERATOR), Some(bad)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_flag")));
    let unknown = json!({"enabled": true, "plans": ["gold"], "rollout_percent": 10});
    let (status, body) = app.call("PUT", "/ops/flags/x", Some(OPERATOR), Some(unknown)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unknown_plan")));

    // Evaluated for the account: the free plan does not get the gated flag; the A/B flag
    // gives a variant, the same on every read.
    let path = format!("/accounts/{acme}/flags");
    let (status, flags) = app.call("GET", &path, Some(&ada), None).await;
    assert_eq!(status, 200, "{flags}");
    assert_eq!(flags["flags"]["new_editor"]["enabled"], false);
    assert_eq!(flags["flags"]["new_editor"]["reason"], "plan");
    let variant = flags["flags"]["checkout_copy"]["variant"].clone();
    assert!(variant == "control" || variant == "treatment", "{flags}");
    assert_eq!(app.call("GET", &path, Some(&ada), None).await.1["flags"]["checkout_copy"]["variant"], variant);

    // An override may only force a variant the flag has; duplicate variant names are refused.
    let forced = json!({"enabled": true, "variant": "zzz"});
    let (status, body) =
        app.call("PUT", &format!("/ops/flags/checkout_copy/overrides/{acme}"), Some(OPERATOR), Some(forced)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_override")), "{body}");
    let twins = json!({"enabled": true, "rollout_percent": 100, "variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]});
    let (status, body) = app.call("PUT", "/ops/flags/twins", Some(OPERATOR), Some(twins)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_flag")), "{body}");

    // A per-account override wins over the plan, at once.
    let (status, _) = app
        .call("PUT", &format!("/ops/flags/new_editor/overrides/{acme}"), Some(OPERATOR), Some(json!({"enabled": true})))
        .await;
    assert_eq!(status, 200);
    let (_, flags) = app.call("GET", &path, Some(&ada), None).await;
    assert_eq!(
        (flags["flags"]["new_editor"]["enabled"].as_bool(), flags["flags"]["new_editor"]["reason"].as_str()),
        (Some(true), Some("override"))
    );
    assert_eq!(
        app.call("DELETE", &format!("/ops/flags/new_editor/overrides/{acme}"), Some(OPERATOR), None).await.0,
        204
    );
    assert_eq!(app.call("GET", &path, Some(&ada), None).await.1["flags"]["new_editor"]["enabled"], false);

    // In-process, any function asks the same question.
    let s = &app.stack.services;
    assert!(!s.flags().enabled(acme.parse().unwrap(), "new_editor").await.unwrap());
    assert!(!s.flags().enabled(acme.parse().unwrap(), "no_such_flag").await.unwrap());
    let (_, list) = app.call("GET", "/ops/flags", Some(OPERATOR), None).await;
    assert_eq!(list["flags"].as_array().unwrap().len(), 2);
    // Changes are audited.
    let audit = shared::audit::export_json_lines(s.store.as_ref(), "ops").await.unwrap();
    assert!(audit.contains("flag.changed") && audit.contains("flag.override_set"));
}
