//! SCIM directory sync through the local stack, as Okta and Entra ID drive it: users at the
//! organization's verified domain are linked and join its accounts, groups map to roles,
//! the providers' own `PATCH` shapes work, and deprovisioning ends memberships and live
//! sessions at once. (RFC compliance as a whole is checked by `scim2-tester` in the test
//! command: `infra/scim_compliance.py`.)

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use testkit::app::TestApp;

use crate::domains::{fresh_domain, org_with_account, verified};

const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// A SCIM request with the directory token; returns the status, headers and body.
async fn scim(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    if_match: Option<&str>,
) -> (u16, HeaderMap, Value) {
    let mut req = app.client.request(method.parse().unwrap(), format!("{}/scim/v2{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", SCIM_JSON).body(b.to_string());
    }
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    if status != 204 && status != 304 {
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(SCIM_JSON),
            "{method} {path}: SCIM answers in SCIM's media type, errors included ({status})"
        );
    }
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

/// The role of `email` in `account`, as its owner sees the member list.
async fn role_of(app: &TestApp, owner: &str, account: &str, email: &str) -> Option<String> {
    let (status, members) = app.call("GET", &format!("/accounts/{account}/members"), Some(owner), None).await;
    assert_eq!(status, 200, "{members}");
    members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == email)
        .map(|m| m["role"].as_str().unwrap().to_owned())
}

fn patch(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

#[tokio::test]
async fn directory_sync_links_verified_domain_users_maps_groups_to_roles_and_deprovisioning_ends_sessions() {
    let app = TestApp::spawn(&[("GROUNDWORK_DNS_RESOLVER", &testkit::dns::server())]).await;
    let domain = fresh_domain();
    let (alice, _) = app.user(&format!("alice@{domain}")).await;
    let (org, general) = org_with_account(&app, &alice).await;
    verified(&app, &alice, &org, &domain, json!({})).await;
    let (_, eng) = app.call("POST", "/accounts", Some(&alice), Some(json!({"name": "Acme Engineering"}))).await;
    let eng = eng["id"].as_str().unwrap().to_owned();
    let attach = json!({"account_id": eng});
    assert_eq!(app.call("POST", &format!("/organizations/{org}/accounts"), Some(&alice), Some(attach)).await.0, 200);

    // Only the organization's admins set the directory up; owners are never granted by it.
    let (mallory, _) = app.user("mallory@elsewhere.test").await;
    let scim_admin = format!("/organizations/{org}/scim");
    assert_eq!(app.call("POST", &format!("{scim_admin}/token"), Some(&mallory), None).await.0, 404);
    let (status, view) = app.call("GET", &scim_admin, Some(&alice), None).await;
    assert_eq!((status, view["enabled"].as_bool()), (200, Some(false)), "no directory yet: {view}");
    let (status, issued) = app.call("POST", &format!("{scim_admin}/token"), Some(&alice), None).await;
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("gws_") && issued["base_url"].as_str().unwrap().ends_with("/scim/v2"), "{issued}");
    let settings = |role: &str| {
        json!({"default_account_id": general, "default_role": "read_only",
               "group_roles": [{"group": "Engineering", "account_id": eng, "role": role}]})
    };
    let (status, body) = app.call("PUT", &scim_admin, Some(&alice), Some(settings("owner"))).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_role")));
    assert_eq!(app.call("PUT", &scim_admin, Some(&mallory), Some(settings("admin"))).await.0, 404);
    let (status, body) = app.call("PUT", &scim_admin, Some(&alice), Some(settings("admin"))).await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = app.call("GET", &scim_admin, Some(&alice), None).await;
    assert!(view["token_prefix"].as_str().unwrap().starts_with("gws_") && !view.to_string().contains(&token), "{view}");

    // Without the token, or with something else: 401 in SCIM's error body.
    for bad in [None, Some(alice.as_str()), Some("gws_not-a-token")] {
        let (status, headers, body) = scim(&app, "GET", "/Users", bad, None, None).await;
        assert_eq!((status, body["status"].as_str()), (401, Some("401")), "{body}");
        assert!(headers.contains_key("www-authenticate"));
    }

    // Okta creates a person who already has a Groundwork user at the verified domain: linked,
    // and a member of the default account with the default role.
    let dev_email = format!("dev@{domain}");
    let (dev_session, dev_user) = app.user(&dev_email).await;
    let okta_user = json!({
        "schemas": [USER_SCHEMA], "userName": dev_email.to_uppercase(), "externalId": "00u1",
        "name": {"givenName": "Dev", "familyName": "Eloper"}, "active": true,
        "emails": [{"primary": true, "value": dev_email, "type": "work"}],
    });
    let (status, headers, dev) = scim(&app, "POST", "/Users", Some(&token), Some(okta_user.clone()), None).await;
    assert_eq!(status, 201, "{dev}");
    let dev_id = dev["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["etag"].to_str().unwrap(), dev["meta"]["version"].as_str().unwrap());
    assert!(dev["meta"]["location"].as_str().unwrap().ends_with(&format!("/scim/v2/Users/{dev_id}")));
    assert_eq!(headers["location"].to_str().unwrap(), dev["meta"]["location"].as_str().unwrap());
    assert_eq!(role_of(&app, &alice, &general, &dev_email).await.as_deref(), Some("read_only"));
    assert_eq!(role_of(&app, &alice, &eng, &dev_email).await, None);

    // userName is unique without regard to case: a retried create is a conflict.
    let (status, _, body) = scim(&app, "POST", "/Users", Some(&token), Some(okta_user), None).await;
    assert_eq!((status, body["scimType"].as_str()), (409, Some("uniqueness")), "{body}");

    // A new person at the domain gets a Groundwork user; one elsewhere is kept, unlinked.
    let new_email = format!("new.hire@{domain}");
    let new_user = json!({"schemas": [USER_SCHEMA], "userName": new_email, "displayName": "New Hire", "active": true});
    let (status, _, new_hire) = scim(&app, "POST", "/Users", Some(&token), Some(new_user), None).await;
    assert_eq!(status, 201, "{new_hire}");
    assert_eq!(role_of(&app, &alice, &general, &new_email).await.as_deref(), Some("read_only"));
    let outsider = json!({"schemas": [USER_SCHEMA], "userName": "contractor@gmail.com", "active": true});
    assert_eq!(scim(&app, "POST", "/Users", Some(&token), Some(outsider), None).await.0, 201);
    assert_eq!(role_of(&app, &alice, &general, "contractor@gmail.com").await, None);

    // Filters the providers send before they create or update.
    let filter = format!("/Users?filter=userName%20eq%20%22{}%22", dev_email.replace('@', "%40"));
    let (status, _, found) = scim(&app, "GET", &filter, Some(&token), None, None).await;
    assert_eq!((status, found["totalResults"].as_u64()), (200, Some(1)), "{found}");
    assert_eq!(found["Resources"][0]["id"], dev_id.as_str());
    let (_, _, found) = scim(&app, "GET", "/Users?filter=externalId%20eq%20%2200U1%22", Some(&token), None, None).await;
    assert_eq!(found["totalResults"], 0, "externalId is case-exact");
    let (_, _, all) = scim(&app, "GET", "/Users?startIndex=2&count=1", Some(&token), None, None).await;
    assert_eq!((all["totalResults"].as_u64(), all["itemsPerPage"].as_u64()), (Some(3), Some(1)), "{all}");
    let (status, _, body) = scim(&app, "GET", "/Users?filter=userName%20zz%20%22x%22", Some(&token), None, None).await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("invalidFilter")));

    // A group mapped to a role: its members get it in its account.
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "engineering",
                       "members": [{"value": dev_id, "display": "Dev"}]});
    let (status, _, group) = scim(&app, "POST", "/Groups", Some(&token), Some(group), None).await;
    assert_eq!(status, 201, "{group}");
    let group_path = format!("/Groups/{}", group["id"].as_str().unwrap());
    assert_eq!(role_of(&app, &alice, &eng, &dev_email).await.as_deref(), Some("admin"));
    let unknown_member =
        patch(json!([{"op": "add", "path": "members", "value": [{"value": "01J00000000000000000000000"}]}]));
    let (status, _, body) = scim(&app, "PATCH", &group_path, Some(&token), Some(unknown_member), None).await;
    assert_eq!((status, body["scimType"].as_str()), (400, Some("invalidValue")), "{body}");

    // Entra ID removes a member with a value list; Okta adds one back; a retried removal of
    // someone no longer there succeeds.
    let entra_remove = patch(json!([{"op": "Remove", "path": "members", "value": [{"value": dev_id}]}]));
    let (status, _, body) = scim(&app, "PATCH", &group_path, Some(&token), Some(entra_remove), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(role_of(&app, &alice, &eng, &dev_email).await, None);
    let okta_remove = patch(json!([{"op": "remove", "path": format!("members[value eq \"{dev_id}\"]")}]));
    assert_eq!(scim(&app, "PATCH", &group_path, Some(&token), Some(okta_remove), None).await.0, 200);
    let okta_add = patch(json!([{"op": "add", "path": "members", "value": [{"value": dev_id}]}]));
    assert_eq!(scim(&app, "PATCH", &group_path, Some(&token), Some(okta_add), None).await.0, 200);
    assert_eq!(role_of(&app, &alice, &eng, &dev_email).await.as_deref(), Some("admin"));

    // ETags: a stale If-Match is refused, the current one accepted.
    let dev_path = format!("/Users/{dev_id}");
    let (_, headers, _) = scim(&app, "GET", &dev_path, Some(&token), None, None).await;
    let current = headers["etag"].to_str().unwrap().to_owned();
    let rename = patch(json!([{"op": "replace", "path": "name.givenName", "value": "Devon"}]));
    let (status, _, _) = scim(&app, "PATCH", &dev_path, Some(&token), Some(rename.clone()), Some("W/\"1\"")).await;
    assert_eq!(status, 412);
    let (status, _, renamed) = scim(&app, "PATCH", &dev_path, Some(&token), Some(rename), Some(&current)).await;
    assert_eq!((status, renamed["name"]["givenName"].as_str()), (200, Some("Devon")), "{renamed}");

    // Okta renames the group repeating its id; Entra ID's default mappings send attributes
    // the directory does not keep: both succeed. Parallel membership changes all land.
    let rename = patch(json!([{"op": "replace", "value": {"id": group["id"], "displayName": "Engineering"}}]));
    let (status, _, renamed) = scim(&app, "PATCH", &group_path, Some(&token), Some(rename), None).await;
    assert_eq!((status, renamed["displayName"].as_str()), (200, Some("Engineering")), "{renamed}");
    let phone = patch(json!([{"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0100"}]));
    assert_eq!(scim(&app, "PATCH", &format!("/Users/{dev_id}"), Some(&token), Some(phone), None).await.0, 200);
    let mut extra = Vec::new();
    for n in 0..6 {
        let body = json!({"schemas": [USER_SCHEMA], "userName": format!("extra{n}@elsewhere.test")});
        let (status, _, user) = scim(&app, "POST", "/Users", Some(&token), Some(body), None).await;
        assert_eq!(status, 201, "{user}");
        extra.push(user["id"].as_str().unwrap().to_owned());
    }
    let adds = extra.iter().map(|id| {
        let body = patch(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
        let app = &app;
        let (path, token) = (&group_path, &token);
        async move { scim(app, "PATCH", path, Some(token), Some(body), None).await.0 }
    });
    assert!(futures_util::future::join_all(adds).await.iter().all(|s| *s == 200));
    let (_, _, group_now) = scim(&app, "GET", &group_path, Some(&token), None, None).await;
    assert_eq!(group_now["members"].as_array().unwrap().len(), 7, "{group_now}");
    // A method the endpoint does not take is refused in SCIM's body too.
    let (status, _, body) = scim(&app, "PUT", "/Users", Some(&token), Some(json!({})), None).await;
    assert_eq!((status, body["status"].as_str()), (405, Some("405")), "{body}");

    // Before they leave, dev is an organization admin and makes an API key in Engineering.
    let admin = json!({"user_id": dev_user});
    assert_eq!(app.call("POST", &format!("/organizations/{org}/admins"), Some(&alice), Some(admin)).await.0, 200);
    let new_key = json!({"name": "mine", "role": "admin"});
    let (status, key) = app.call("POST", &format!("/accounts/{eng}/api-keys"), Some(&dev_session), Some(new_key)).await;
    assert_eq!(status, 201, "{key}");
    let key = key["secret"].as_str().unwrap().to_owned();
    assert_eq!(app.call("GET", &format!("/accounts/{eng}/members"), Some(&key), None).await.0, 200);

    // Entra ID deactivates (a boolean as a string): memberships end, the live session's
    // access token stops working at once, the key they made is revoked, they are no longer
    // an organization admin, and no sign-in opens a session. Sent twice, as a retry would.
    assert_eq!(app.call("GET", "/me", Some(&dev_session), None).await.0, 200);
    let deactivate = patch(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    for _ in 0..2 {
        let (status, _, body) = scim(&app, "PATCH", &dev_path, Some(&token), Some(deactivate.clone()), None).await;
        assert_eq!((status, body["active"].as_bool()), (200, Some(false)), "{body}");
    }
    assert_eq!(app.call("GET", "/me", Some(&dev_session), None).await.0, 401);
    assert_eq!(app.call("GET", &format!("/accounts/{eng}/members"), Some(&key), None).await.0, 401);
    let (_, org_view) = app.call("GET", &format!("/organizations/{org}"), Some(&alice), None).await;
    assert!(!org_view["admins"].as_array().unwrap().contains(&json!(dev_user)), "{org_view}");
    let login = json!({"email": dev_email, "password": testkit::app::PASSWORD});
    let (status, body) = app.call("POST", "/auth/login", None, Some(login.clone())).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("user_suspended")), "{body}");
    assert_eq!(role_of(&app, &alice, &general, &dev_email).await, None);
    assert_eq!(role_of(&app, &alice, &eng, &dev_email).await, None);
    let (_, audit) = app.call("GET", &format!("/organizations/{org}/audit?limit=100"), Some(&alice), None).await;
    let actions: Vec<&str> = audit["events"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "scim.user_deprovisioned").count(), 1, "{actions:?}");
    assert!(actions.contains(&"scim.user_created") && actions.contains(&"organization.scim_token_rotated"));

    // Okta reactivates: the memberships come back, and they can sign in.
    let reactivate = patch(json!([{"op": "replace", "value": {"active": true}}]));
    assert_eq!(scim(&app, "PATCH", &dev_path, Some(&token), Some(reactivate), None).await.0, 200);
    assert_eq!(app.call("POST", "/auth/login", None, Some(login)).await.0, 200);
    assert_eq!(role_of(&app, &alice, &general, &dev_email).await.as_deref(), Some("read_only"));
    assert_eq!(role_of(&app, &alice, &eng, &dev_email).await.as_deref(), Some("admin"));

    // Deleting a user deprovisions them too, and takes them out of their groups.
    assert_eq!(scim(&app, "DELETE", &dev_path, Some(&token), None, None).await.0, 204);
    assert_eq!(scim(&app, "GET", &dev_path, Some(&token), None, None).await.0, 404);
    assert_eq!(scim(&app, "DELETE", &dev_path, Some(&token), None, None).await.0, 404);
    assert_eq!(role_of(&app, &alice, &eng, &dev_email).await, None);
    let (_, _, group) = scim(&app, "GET", &group_path, Some(&token), None, None).await;
    assert!(!group["members"].to_string().contains(&dev_id), "{group}");

    // Another organization's directory sees none of this one's resources.
    let (bob, _) = app.user("bob@other.test").await;
    let (other_org, _) = org_with_account(&app, &bob).await;
    let (_, other) = app.call("POST", &format!("/organizations/{other_org}/scim/token"), Some(&bob), None).await;
    let other_token = other["token"].as_str().unwrap();
    let hire_path = format!("/Users/{}", new_hire["id"].as_str().unwrap());
    assert_eq!(scim(&app, "GET", &hire_path, Some(other_token), None, None).await.0, 404);
    let (_, _, listed) = scim(&app, "GET", "/Users", Some(other_token), None, None).await;
    assert_eq!(listed["totalResults"], 0);

    // Rotation: the old token stops working at once.
    let (status, rotated) = app.call("POST", &format!("{scim_admin}/token"), Some(&alice), None).await;
    assert_eq!(status, 201);
    assert_eq!(scim(&app, "GET", "/Users", Some(&token), None, None).await.0, 401);
    let new_token = rotated["token"].as_str().unwrap();
    assert_eq!(scim(&app, "GET", &hire_path, Some(new_token), None, None).await.0, 200);
    let (status, _, body) = scim(&app, "GET", "/NoSuchEndpoint", Some(new_token), None, None).await;
    assert_eq!((status, body["status"].as_str()), (404, Some("404")));

    // Switched off: the token is gone, the memberships it granted stay.
    assert_eq!(app.call("DELETE", &scim_admin, Some(&alice), None).await.0, 204);
    assert_eq!(scim(&app, "GET", "/Users", Some(new_token), None, None).await.0, 401);
    assert_eq!(app.call("DELETE", &scim_admin, Some(&alice), None).await.0, 204, "off already: still 204");
    assert_eq!(role_of(&app, &alice, &general, &new_email).await.as_deref(), Some("read_only"));
}
