//! Tenancy end to end on the local stack: accounts, invitations, roles, switching accounts,
//! API keys, required 2FA, soft delete and restore, exports and erasure; and the isolation
//! matrix: every tenant-scoped route × every kind of attacker.

use serde_json::{Value, json};
use shared::tenancy::{Action, Role};
use testkit::app::TestApp;

async fn create_account(app: &TestApp, token: &str, name: &str) -> String {
    let (status, body) = app.call("POST", "/accounts", Some(token), Some(json!({"name": name}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["role"], "owner");
    body["id"].as_str().unwrap().to_owned()
}

/// Invites `email` to `account` as `role` and accepts as `invitee_token`.
async fn join(app: &TestApp, admin: &str, account: &str, email: &str, role: &str, invitee: &str) {
    let path = format!("/accounts/{account}/invitations");
    let (status, inv) = app.call("POST", &path, Some(admin), Some(json!({"email": email, "role": role}))).await;
    assert_eq!(status, 201, "{inv}");
    let token = app.token_from_email(email, "invited you to").await;
    let (status, joined) = app.call("POST", "/invitations/accept", Some(invitee), Some(json!({"token": token}))).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["role"], role);
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array().unwrap().iter().map(|v| v[field].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn two_people_invite_join_change_roles_and_switch_accounts() {
    let app = TestApp::spawn(&[]).await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let (bob, bob_id) = app.user("bob@example.com").await;
    let acme = create_account(&app, &ada, "Acme").await;
    let globex = create_account(&app, &bob, "Globex").await;

    // Ada invites Bob; the link works once, for Bob's address only.
    let (status, inv) = app
        .call("POST", &format!("/accounts/{acme}/invitations"), Some(&ada), Some(json!({"email": "bob@example.com"})))
        .await;
    assert_eq!(status, 201, "{inv}");
    assert!(inv.get("token_hash").is_none(), "no hash leaves: {inv}");
    let (status, again) = app
        .call("POST", &format!("/accounts/{acme}/invitations"), Some(&ada), Some(json!({"email": "bob@example.com"})))
        .await;
    assert_eq!((status, again["code"].as_str()), (409, Some("already_invited")));
    let token = app.token_from_email("bob@example.com", "invited you to").await;
    let (carol, _) = app.user("carol@example.com").await;
    let (status, body) = app.call("POST", "/invitations/accept", Some(&carol), Some(json!({"token": token}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("invitation_for_another_email")));
    let (status, body) = app.call("POST", "/invitations/accept", Some(&bob), Some(json!({"token": token}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "member");
    let (status, body) = app.call("POST", "/invitations/accept", Some(&bob), Some(json!({"token": token}))).await;
    assert_eq!(status, 400, "a used link is gone: {body}");
    // Inviting an existing member is refused.
    let (status, body) = app
        .call("POST", &format!("/accounts/{acme}/invitations"), Some(&ada), Some(json!({"email": "bob@example.com"})))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("already_member")));

    // One token, two accounts: Bob names the account in the path.
    let (status, mine) = app.call("GET", "/accounts", Some(&bob), None).await;
    assert_eq!(status, 200);
    let mut names = ids(&mine["accounts"], "name");
    names.sort();
    assert_eq!(names, vec!["Acme", "Globex"]);
    assert_eq!(app.call("GET", &format!("/accounts/{acme}"), Some(&bob), None).await.1["role"], "member");
    assert_eq!(app.call("GET", &format!("/accounts/{globex}"), Some(&bob), None).await.1["role"], "owner");
    // ...but Ada cannot see Globex.
    assert_eq!(app.call("GET", &format!("/accounts/{globex}"), Some(&ada), None).await.0, 404);

    // A member cannot manage members; an admin can, but not owners.
    let member_path = format!("/accounts/{acme}/members/{ada_id}");
    assert_eq!(app.call("PATCH", &member_path, Some(&bob), Some(json!({"role": "read_only"}))).await.0, 403);
    let bob_path = format!("/accounts/{acme}/members/{bob_id}");
    let (status, body) = app.call("PATCH", &bob_path, Some(&ada), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.call("PATCH", &member_path, Some(&bob), Some(json!({"role": "member"}))).await.0, 403);
    let (status, body) = app.call("PATCH", &bob_path, Some(&ada), Some(json!({"role": "superuser"}))).await;
    assert_eq!(status, 422, "unknown roles are refused: {body}");

    // The last owner can neither leave nor be demoted; after a transfer, they can.
    let (status, body) = app.call("POST", &format!("/accounts/{acme}/leave"), Some(&ada), None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")));
    let (status, body) = app.call("PATCH", &member_path, Some(&ada), Some(json!({"role": "admin"}))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")));
    let (status, body) = app
        .call("POST", &format!("/accounts/{acme}/transfer-ownership"), Some(&ada), Some(json!({"user_id": bob_id})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, members) = app.call("GET", &format!("/accounts/{acme}/members"), Some(&ada), None).await;
    let roles: Vec<(String, String)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    assert!(roles.contains(&("bob@example.com".into(), "owner".into())), "{roles:?}");
    assert!(roles.contains(&("ada@example.com".into(), "admin".into())), "{roles:?}");
    assert_eq!(app.call("POST", &format!("/accounts/{acme}/leave"), Some(&ada), None).await.0, 204);
    assert_eq!(app.call("GET", &format!("/accounts/{acme}"), Some(&ada), None).await.0, 404, "gone at once");

    // Every change is in the account's audit log, chained.
    let (status, audit) = app.call("GET", &format!("/accounts/{acme}/audit"), Some(&bob), None).await;
    assert_eq!(status, 200);
    let actions = ids(&audit["events"], "action");
    for a in [
        "account.created",
        "invitation.created",
        "invitation.accepted",
        "member.role_changed",
        "account.ownership_transferred",
        "member.left",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a} missing from {actions:?}");
    }
    let store = app.stack.services.store.as_ref();
    assert!(shared::audit::verify(store, &format!("account:{acme}")).await.unwrap().is_ok());
}

#[tokio::test]
async fn invitations_expire_can_be_revoked_and_resent() {
    let app = TestApp::spawn(&[]).await;
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let acme = create_account(&app, &ada, "Acme").await;
    let path = format!("/accounts/{acme}/invitations");
    let (_, inv) = app.call("POST", &path, Some(&ada), Some(json!({"email": "bob@example.com"}))).await;
    let first = app.token_from_email("bob@example.com", "invited you to").await;
    let id = inv["id"].as_str().unwrap();
    // A resend replaces the link.
    let (status, _) = app.call("POST", &format!("{path}/{id}/resend"), Some(&ada), None).await;
    assert_eq!(status, 200);
    let (status, _) = app.call("POST", "/invitations/accept", Some(&bob), Some(json!({"token": first}))).await;
    assert_eq!(status, 400, "the old link stopped working");
    // A revoked invitation cannot be accepted, and nothing changed.
    assert_eq!(app.call("DELETE", &format!("{path}/{id}"), Some(&ada), None).await.0, 204);
    let (_, list) = app.call("GET", &path, Some(&ada), None).await;
    assert!(list["invitations"].as_array().unwrap().is_empty());
    let (_, members) = app.call("GET", &format!("/accounts/{acme}/members"), Some(&ada), None).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
    // Bad input.
    let (status, body) = app.call("POST", &path, Some(&ada), Some(json!({"email": "not-an-email"}))).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_email")));
    let (status, _) = app.call("POST", "/invitations/accept", Some(&bob), Some(json!({"token": "forged"}))).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn deleted_accounts_disappear_and_can_be_restored_by_an_owner() {
    let app = TestApp::spawn(&[]).await;
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let acme = create_account(&app, &ada, "Acme").await;
    join(&app, &ada, &acme, "bob@example.com", "admin", &bob).await;
    // Admins cannot delete; owners can.
    assert_eq!(app.call("DELETE", &format!("/accounts/{acme}"), Some(&bob), None).await.0, 403);
    let (status, body) = app.call("DELETE", &format!("/accounts/{acme}"), Some(&ada), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call("GET", &format!("/accounts/{acme}/members"), Some(&bob), None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("account_deleted")));
    assert!(app.call("GET", "/accounts", Some(&ada), None).await.1["accounts"].as_array().unwrap().is_empty());
    // The subscription is marked for cancellation.
    let store = app.stack.services.store.as_ref();
    let acme_id = acme.parse().unwrap();
    assert!(store.get(&shared::keys::pending_cancellation(acme_id)).await.unwrap().is_some());
    assert_eq!(app.call("POST", &format!("/accounts/{acme}/restore"), Some(&bob), None).await.0, 403);
    let (status, body) = app.call("POST", &format!("/accounts/{acme}/restore"), Some(&ada), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(store.get(&shared::keys::pending_cancellation(acme_id)).await.unwrap().is_none());
    assert_eq!(app.call("GET", &format!("/accounts/{acme}/members"), Some(&bob), None).await.0, 200);
    let (status, body) = app.call("POST", &format!("/accounts/{acme}/restore"), Some(&ada), None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("not_deleted")));
}

#[tokio::test]
async fn api_keys_act_in_their_account_only_until_revoked() {
    let app = TestApp::spawn(&[]).await;
    let (ada, _) = app.user("ada@example.com").await;
    let acme = create_account(&app, &ada, "Acme").await;
    let other = create_account(&app, &ada, "Other").await;
    let path = format!("/accounts/{acme}/api-keys");
    let (status, key) = app.call("POST", &path, Some(&ada), Some(json!({"name": "CI", "role": "admin"}))).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(&key["display_prefix"].as_str().unwrap().to_owned()));
    let (status, body) = app.call("POST", &path, Some(&ada), Some(json!({"name": "x", "role": "owner"}))).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_role")));

    assert_eq!(app.call("GET", &format!("/accounts/{acme}/members"), Some(&secret), None).await.0, 200);
    assert_eq!(app.call("GET", &format!("/accounts/{other}/members"), Some(&secret), None).await.0, 404);
    assert_eq!(app.call("GET", "/me", Some(&secret), None).await.0, 401, "a key is not a user");
    let tampered = format!("{}x", &secret[..secret.len() - 1]);
    assert_eq!(app.call("GET", &format!("/accounts/{acme}"), Some(&tampered), None).await.0, 401);

    let (_, list) = app.call("GET", &path, Some(&ada), None).await;
    let listed = &list["api_keys"][0];
    assert!(listed["last_used_at_ms"].is_number(), "use is recorded: {listed}");
    assert!(!list.to_string().contains(&secret[secret.len() - 20..]), "the secret is never listed");
    let id = listed["id"].as_str().unwrap();
    assert_eq!(app.call("DELETE", &format!("{path}/{id}"), Some(&ada), None).await.0, 204);
    assert_eq!(app.call("GET", &format!("/accounts/{acme}"), Some(&secret), None).await.0, 401);
}

#[tokio::test]
async fn an_account_can_require_two_factor_sign_in() {
    let app = TestApp::spawn(&[]).await;
    let (ada, _) = app.user("ada@example.com").await;
    let acme = create_account(&app, &ada, "Acme").await;
    // Ada herself signed in without 2FA, so she cannot require it yet.
    let (status, body) =
        app.call("PATCH", &format!("/accounts/{acme}"), Some(&ada), Some(json!({"require_mfa": true}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("mfa_required")));
    // Flip it in the store (as if she had), then her password-only session is refused.
    let store = app.stack.services.store.as_ref();
    let key = shared::keys::account(acme.parse().unwrap());
    store.update(shared::store::Update::new(key).set("require_mfa", true)).await.unwrap();
    let (status, body) = app.call("GET", &format!("/accounts/{acme}"), Some(&ada), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("mfa_required")));
}

#[tokio::test]
async fn users_and_owners_export_their_data_and_users_can_erase_themselves() {
    let app = TestApp::spawn(&[]).await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let acme = create_account(&app, &ada, "Acme").await;
    let (status, started) = app.call("POST", &format!("/accounts/{acme}/export"), Some(&ada), None).await;
    assert_eq!(status, 202, "{started}");
    let id = started["export_id"].as_str().unwrap();
    let token = app.token_from_email("ada@example.com", &format!("/exports/{id}?token=")).await;
    let res = app.client.get(format!("{}/exports/{id}?token={token}", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["data"]["account"]["name"], "Acme");
    assert_eq!(doc["data"]["items"]["members"][0]["user_id"], ada_id.as_str());
    let res = app.client.get(format!("{}/exports/{id}?token=wrong", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 410);

    let (status, started) = app.call("POST", "/me/export", Some(&ada), None).await;
    assert_eq!(status, 202);
    let id = started["export_id"].as_str().unwrap().to_owned();
    // The link of this export (an email of the account's export came before it).
    let token = app.token_from_email("ada@example.com", &format!("/exports/{id}?token=")).await;
    let res = app.client.get(format!("{}/exports/{id}?token={token}", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200, "the emailed link downloads the export");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["data"]["user"]["email"], "ada@example.com");
    let text = doc.to_string();
    assert!(!text.contains("password_hash") && !text.contains("argon2") && !text.contains("refresh_hash"), "{text}");

    // Erasure: wrong password refused; then the address is free and the sessions are over.
    let (status, _) = app.call("DELETE", "/me", Some(&ada), Some(json!({"password": "not-it-at-all-123"}))).await;
    assert_eq!(status, 401);
    let (status, body) = app.call("DELETE", "/me", Some(&ada), Some(json!({"password": testkit::app::PASSWORD}))).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(app.call("GET", "/me", Some(&ada), None).await.0, 401);
    let store = app.stack.services.store.as_ref();
    let user = store.get(&shared::keys::user(ada_id.parse().unwrap())).await.unwrap().unwrap();
    assert!(!serde_json::to_string(&user.data).unwrap().contains("ada@example.com"), "personal fields scrubbed");
    // Her only account, which she alone was in, went with her (restorable by no one: purged).
    let (account, _) = shared::tenancy::load_account(store, acme.parse().unwrap()).await.unwrap().unwrap();
    assert!(account.deleted_at_ms.is_some());
    // The address is released: it can sign up again, as a new person.
    let email_key = shared::store::Key::new("EMAIL#ada@example.com", "EMAIL");
    assert!(store.get(&email_key).await.unwrap().is_none());
    let before = app.emails("ada@example.com", "Confirm your email address").len();
    let body = json!({"email": "ada@example.com", "password": testkit::app::PASSWORD});
    assert_eq!(app.call("POST", "/auth/signup", None, Some(body)).await.0, 202);
    testkit::eventually("a new verification email", || async {
        (app.emails("ada@example.com", "Confirm your email address").len() > before).then_some(())
    })
    .await;
    assert!(store.get(&email_key).await.unwrap().is_some());
}

/// A sample body for each tenant route with one, so permission checks (not body
/// validation) decide; a new route with a body must add its sample here.
fn sample_body(method: &str, path: &str, victim_owner: &str) -> Option<Value> {
    let body = match (method, path) {
        ("PATCH", "/accounts/{account_id}") => json!({"name": "Pwned"}),
        ("PATCH", "/accounts/{account_id}/members/{user_id}") => json!({"role": "read_only"}),
        ("POST", "/accounts/{account_id}/transfer-ownership") => json!({"user_id": victim_owner}),
        ("POST", "/accounts/{account_id}/invitations") => json!({"email": "mallory@example.com", "role": "member"}),
        ("POST", "/accounts/{account_id}/api-keys") => json!({"name": "stolen", "role": "read_only"}),
        ("POST", "/accounts/{account_id}/billing/checkout" | "/accounts/{account_id}/billing/change-plan") => {
            json!({"plan": "team", "interval": "monthly"})
        }
        _ => return None,
    };
    Some(body)
}

/// Replaces every `{..._id}` left in `path` with an id no one holds.
fn unknown_ids(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e + 1);
        out.push_str(&rest[..start]);
        out.push_str("01J00000000000000000000000");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The example of a route's request body in the API description (how product routes are
/// exercised without a hand-written body here).
fn example_body(api: &Value, method: &str, path: &str) -> Option<Value> {
    let schema = &api["paths"][path][method.to_lowercase()]["requestBody"]["content"]["application/json"]["schema"];
    let schema = match schema["$ref"].as_str() {
        Some(r) => &api["components"]["schemas"][r.rsplit('/').next()?],
        None => schema,
    };
    schema.get("example").cloned()
}

/// What a read-only member may do besides the routes that name an action they may take;
/// everything else must be 403 for them.
const READ_ONLY_ALLOWED: &[(&str, &str)] = &[
    ("GET", "/accounts/{account_id}"),
    ("GET", "/accounts/{account_id}/members"),
    ("GET", "/accounts/{account_id}/flags"),
    ("POST", "/accounts/{account_id}/leave"),
    ("POST", "/accounts/{account_id}/events"),
];

#[tokio::test]
async fn isolation_matrix_every_tenant_route_against_every_attacker() {
    let app = TestApp::spawn(&[]).await;
    let (owner, owner_id) = app.user("owner@victim.test").await;
    let victim = create_account(&app, &owner, "Victim Secret Corp").await;
    let (_, invitation) = app
        .call("POST", &format!("/accounts/{victim}/invitations"), Some(&owner), Some(json!({"email": "x@victim.test"})))
        .await;
    let invitation_id = invitation["id"].as_str().unwrap().to_owned();
    let (_, key) = app
        .call(
            "POST",
            &format!("/accounts/{victim}/api-keys"),
            Some(&owner),
            Some(json!({"name": "k", "role": "admin"})),
        )
        .await;
    let key_id = key["id"].as_str().unwrap().to_owned();

    // The attackers.
    let (outsider, _) = app.user("outsider@evil.test").await;
    let evil = create_account(&app, &outsider, "Evil").await;
    let (_, evil_key) = app
        .call(
            "POST",
            &format!("/accounts/{evil}/api-keys"),
            Some(&outsider),
            Some(json!({"name": "k", "role": "admin"})),
        )
        .await;
    let evil_key = evil_key["secret"].as_str().unwrap().to_owned();
    let (removed, removed_id) = app.user("removed@victim.test").await;
    join(&app, &owner, &victim, "removed@victim.test", "admin", &removed).await;
    let status = app.call("DELETE", &format!("/accounts/{victim}/members/{removed_id}"), Some(&owner), None).await.0;
    assert_eq!(status, 204);
    let (reader, _) = app.user("reader@victim.test").await;
    join(&app, &owner, &victim, "reader@victim.test", "read_only", &reader).await;
    let (_, org) = app.call("POST", "/organizations", Some(&owner), Some(json!({"name": "Victim Group"}))).await;
    let org_id = org["id"].as_str().unwrap().to_owned();
    let attach = json!({"account_id": victim});
    assert_eq!(app.call("POST", &format!("/organizations/{org_id}/accounts"), Some(&owner), Some(attach)).await.0, 200);
    let expired = {
        let settings = &app.stack.services.tokens;
        let claims = shared::auth::tokens::AccessClaims {
            iss: settings.issuer.clone(),
            aud: settings.audience.clone(),
            sub: owner_id.clone(),
            sid: "01J00000000000000000000000".into(),
            iat: 1_000,
            nbf: 1_000,
            exp: 2_000,
            jti: "j".into(),
        };
        shared::auth::tokens::sign(settings.signing_keys().await.unwrap(), &claims).unwrap()
    };
    let tampered = {
        let mut parts: Vec<String> = owner.split('.').map(str::to_owned).collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };

    // The routes, from the API description: every path naming an account, the product's
    // own included. A route's bearer requirement may name the action it needs (the product
    // routes do): one a read-only member may take is theirs to use.
    let (_, api) = app.call("GET", "/openapi.json", None, None).await;
    let mut routes = Vec::new();
    let mut reader_may = Vec::new();
    for (path, item) in api["paths"].as_object().unwrap() {
        // The operators' routes name accounts too, but take the operator token, never a
        // tenant's credential (their own tests cover them).
        if !path.contains("{account_id}") || path.starts_with("/ops/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let needs =
                operation["security"].as_array().into_iter().flatten().flat_map(|r| {
                    r["bearer"].as_array().into_iter().flatten().filter_map(|a| Action::parse(a.as_str()?))
                });
            if needs.into_iter().any(|a| shared::tenancy::allows(Role::ReadOnly, a)) {
                reader_may.push((method.clone(), path.clone()));
            }
            routes.push((method, path.clone()));
        }
    }
    assert!(routes.len() >= 24, "{routes:?}");
    assert!(reader_may.len() >= 2, "the product routes name their actions: {reader_may:?}");

    // Routes for people only refuse any API key as unauthenticated; that is as good as 404.
    let attackers: Vec<(&str, Option<&str>, &[u16])> = vec![
        ("no token", None, &[401]),
        ("expired token", Some(&expired), &[401]),
        ("tampered token", Some(&tampered), &[401]),
        ("member of another account", Some(&outsider), &[404]),
        ("another account's API key", Some(&evil_key), &[404, 401]),
        ("removed member", Some(&removed), &[404]),
    ];
    let mut failures = Vec::new();
    for (method, template) in &routes {
        let known = template
            .replace("{account_id}", &victim)
            .replace("{user_id}", &owner_id)
            .replace("{invitation_id}", &invitation_id)
            .replace("{key_id}", &key_id)
            .replace("{org_id}", &org_id);
        // Ids of the product's own resources: well-formed, and nothing of anyone's.
        let path = unknown_ids(&known);
        let body = sample_body(method, template, &owner_id).or_else(|| example_body(&api, method, template));
        for (who, token, expected) in &attackers {
            let (mut status, mut answer) = app.call(method, &path, *token, body.clone()).await;
            // The key's free plan allows a few requests a second: wait as a client would.
            while status == 429 && answer["code"] == "rate_limited" {
                tokio::time::sleep(std::time::Duration::from_secs(answer["retry_after"].as_u64().unwrap_or(1))).await;
                (status, answer) = app.call(method, &path, *token, body.clone()).await;
            }
            let text = answer.to_string();
            if !expected.contains(&status) || text.contains("Victim Secret Corp") || text.contains("owner@victim.test")
            {
                failures.push(format!("{method} {template} as {who}: {status} {text}"));
            }
        }
        let allowed = READ_ONLY_ALLOWED.contains(&(method.as_str(), template.as_str()))
            || reader_may.contains(&(method.clone(), template.clone()));
        if !allowed {
            // Outside the account's own paths (an organization's), a member is a stranger: 404.
            let refused: &[u16] = if template.starts_with("/accounts/") { &[403] } else { &[403, 404] };
            let (status, answer) = app.call(method, &path, Some(&reader), body.clone()).await;
            // The role is checked before any feature flag: a flag that is off must not be
            // what refuses the reader (with it on, a missing role check would let them in).
            if !refused.contains(&status) || answer["code"] == "feature_disabled" {
                failures.push(format!("{method} {template} as read-only member: {status} {answer}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} leaks or wrong answers:\n{}", failures.len(), failures.join("\n"));

    // Nothing changed: the account, its owner and its key are as they were.
    let (status, account) = app.call("GET", &format!("/accounts/{victim}"), Some(&owner), None).await;
    assert_eq!((status, account["name"].as_str()), (200, Some("Victim Secret Corp")));
    assert_eq!(account["role"], "owner");
    let (_, keys) = app.call("GET", &format!("/accounts/{victim}/api-keys"), Some(&owner), None).await;
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 1);
    assert!(keys["api_keys"][0]["revoked_at_ms"].is_null());
}

#[tokio::test]
async fn organizations_group_accounts_and_hold_sso_settings() {
    let app = TestApp::spawn(&[]).await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let (bob, bob_id) = app.user("bob@example.com").await;
    let acme = create_account(&app, &ada, "Acme").await;
    let (status, org) = app.call("POST", "/organizations", Some(&ada), Some(json!({"name": "Acme Group"}))).await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let base = format!("/organizations/{org_id}");
    assert_eq!(app.call("GET", &base, Some(&bob), None).await.0, 404, "only its admins see it");
    let (status, org) =
        app.call("POST", &format!("{base}/accounts"), Some(&ada), Some(json!({"account_id": acme}))).await;
    assert_eq!(status, 200, "{org}");
    assert_eq!(org["account_ids"][0], acme.as_str());
    // Ada cannot attach an account she is not in: a wrong value in the body, not a missing
    // organization.
    let globex = create_account(&app, &bob, "Globex").await;
    let (status, body) =
        app.call("POST", &format!("{base}/accounts"), Some(&ada), Some(json!({"account_id": globex}))).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unknown_account")), "{body}");

    let sso = json!({"issuer": "https://login.acme.test", "client_id": "gw", "client_secret": "s3cr3t-value",
                     "allowed_domains": ["Acme.test"], "jit_account_id": acme, "jit_role": "member"});
    let (status, org) = app.call("PUT", &format!("{base}/sso"), Some(&ada), Some(sso.clone())).await;
    assert_eq!(status, 200, "{org}");
    assert_eq!(org["sso"]["allowed_domains"][0], "acme.test");
    assert!(!org.to_string().contains("s3cr3t-value"), "the client secret is never shown");
    // The issuer is fetched by the server: https, and never a private or loopback address,
    // by literal or by what its name resolves to.
    for issuer in [
        "http://login.acme.test",
        "https://127.0.0.1:8443",
        "https://localhost:8443",
        "https://169.254.169.254",
        "https://[fd00::1]",
    ] {
        let mut bad = sso.clone();
        bad["issuer"] = json!(issuer);
        let (status, body) = app.call("PUT", &format!("{base}/sso"), Some(&ada), Some(bad)).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("invalid_issuer")), "{issuer}: {body}");
    }
    let mut bad = sso;
    bad["jit_role"] = json!("owner");
    assert_eq!(app.call("PUT", &format!("{base}/sso"), Some(&ada), Some(bad)).await.0, 422);

    // Admins: add Bob, the last one cannot go.
    let (status, org) = app.call("POST", &format!("{base}/admins"), Some(&ada), Some(json!({"user_id": bob_id}))).await;
    assert_eq!(status, 200, "{org}");
    assert_eq!(app.call("GET", &base, Some(&bob), None).await.0, 200);
    assert_eq!(app.call("DELETE", &format!("{base}/admins/{ada_id}"), Some(&bob), None).await.0, 204);
    let (status, body) = app.call("DELETE", &format!("{base}/admins/{bob_id}"), Some(&bob), None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_admin")));
    // Ada, no longer an admin, still owns Acme, so she may take it out.
    assert_eq!(app.call("DELETE", &format!("{base}/accounts/{acme}"), Some(&ada), None).await.0, 204);
    assert!(app.call("GET", &base, Some(&bob), None).await.1["account_ids"].as_array().unwrap().is_empty());
    assert!(app.call("GET", &format!("/accounts/{acme}"), Some(&ada), None).await.1["org_id"].is_null());
    let (_, audit) = app.call("GET", &format!("/accounts/{acme}/audit"), Some(&ada), None).await;
    assert!(ids(&audit["events"], "action").contains(&"account.detached_from_organization".to_owned()));
}
