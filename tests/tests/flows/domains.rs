//! Verified domains against the loopback DNS server the test command starts: the TXT record
//! proves a claim (checked by the worker's job), the first organization to verify a domain
//! holds it, and people at a verified domain land in the account per its enrollment mode.

use serde_json::{Value, json};
use testkit::app::TestApp;

/// The stack, asking the loopback DNS server.
async fn app() -> TestApp {
    TestApp::spawn(&[("GROUNDWORK_DNS_RESOLVER", &testkit::dns::server())]).await
}

/// A domain no other test uses.
pub(crate) fn fresh_domain() -> String {
    format!("acme-{}.test", ulid::Ulid::new().to_string().to_ascii_lowercase())
}

/// An organization `admin` runs, with an account attached; returns their ids.
pub(crate) async fn org_with_account(app: &TestApp, admin: &str) -> (String, String) {
    let (status, account) = app.call("POST", "/accounts", Some(admin), Some(json!({"name": "Acme"}))).await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["id"].as_str().unwrap().to_owned();
    let (status, org) = app.call("POST", "/organizations", Some(admin), Some(json!({"name": "Acme Group"}))).await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let attach = json!({"account_id": account_id});
    assert_eq!(app.call("POST", &format!("/organizations/{org_id}/accounts"), Some(admin), Some(attach)).await.0, 200);
    (org_id, account_id)
}

/// Claims `domain` for `org`, publishes its record, verifies it; returns the claim.
pub(crate) async fn verified(app: &TestApp, admin: &str, org: &str, domain: &str, settings: Value) -> Value {
    let mut body = settings;
    body["domain"] = json!(domain);
    let (status, claim) = app.call("POST", &format!("/organizations/{org}/domains"), Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{claim}");
    let record = &claim["verification_record"];
    testkit::dns::set_txt(record["name"].as_str().unwrap(), &[record["value"].as_str().unwrap()]);
    let path = format!("/organizations/{org}/domains/{domain}");
    // The check made on creation may have found the record already (200) or not yet (202).
    let status = app.call("POST", &format!("{path}/verify"), Some(admin), None).await.0;
    assert!(status == 200 || status == 202, "{status}");
    app.drain().await;
    let (_, claim) = app.call("GET", &path, Some(admin), None).await;
    assert_eq!(claim["status"], "verified", "{claim}");
    claim
}

#[tokio::test]
async fn a_txt_record_verifies_a_claim_and_the_first_organization_to_verify_holds_the_domain() {
    let app = app().await;
    let (alice, _) = app.user("alice@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let (org_a, _) = org_with_account(&app, &alice).await;
    let (org_b, _) = org_with_account(&app, &bob).await;
    let domains_a = format!("/organizations/{org_a}/domains");
    let domains_b = format!("/organizations/{org_b}/domains");

    // Free mail and disposable domains belong to anyone; malformed names are not domains.
    for (domain, code) in [
        ("gmail.com", "shared_mail_domain"),
        ("mailinator.com", "shared_mail_domain"),
        ("not a domain", "invalid_domain"),
        ("localhost", "invalid_domain"),
        ("1.2.3.4", "invalid_domain"),
        ("bücher.test", "invalid_domain"),
        ("acme.test.", "invalid_domain"),
    ] {
        let (status, body) = app.call("POST", &domains_a, Some(&alice), Some(json!({"domain": domain}))).await;
        assert_eq!((status, body["code"].as_str()), (422, Some(code)), "{domain}: {body}");
    }
    // Someone else's organization is not found.
    let domain = fresh_domain();
    assert_eq!(app.call("POST", &domains_a, Some(&bob), Some(json!({"domain": domain}))).await.0, 404);

    // Both claim it (in either case); each is shown its own record.
    let (status, claim_a) =
        app.call("POST", &domains_a, Some(&alice), Some(json!({"domain": domain.to_uppercase()}))).await;
    assert_eq!(status, 201, "{claim_a}");
    assert_eq!((claim_a["domain"].as_str(), claim_a["status"].as_str()), (Some(domain.as_str()), Some("pending")));
    let record_a = &claim_a["verification_record"];
    assert_eq!(record_a["type"], "TXT");
    assert_eq!(record_a["name"], format!("_groundwork-verification.{domain}"));
    let (status, claim_b) = app.call("POST", &domains_b, Some(&bob), Some(json!({"domain": domain}))).await;
    assert_eq!(status, 201, "{claim_b}");
    assert_ne!(claim_b["verification_record"]["value"], record_a["value"]);
    let (status, again) = app.call("POST", &domains_a, Some(&alice), Some(json!({"domain": domain}))).await;
    assert_eq!((status, again["code"].as_str()), (409, Some("domain_exists")));

    // The check that ran on creation found nothing: the record is not published yet.
    app.drain().await;
    let claim_path = format!("{domains_a}/{domain}");
    let (_, claim) = app.call("GET", &claim_path, Some(&alice), None).await;
    assert_eq!(
        (claim["status"].as_str(), claim["last_check"]["result"].as_str()),
        (Some("pending"), Some("record_not_found"))
    );

    // A record with the wrong value proves nothing.
    let name = record_a["name"].as_str().unwrap();
    testkit::dns::set_txt(name, &["groundwork-verification=not-the-token", "v=spf1 -all"]);
    assert_eq!(app.call("POST", &format!("{claim_path}/verify"), Some(&alice), None).await.0, 202);
    app.drain().await;
    let (_, claim) = app.call("GET", &claim_path, Some(&alice), None).await;
    assert_eq!(claim["status"], "pending", "{claim}");

    // Both records published (two organizations' TXT values can sit side by side): the
    // first to be checked wins.
    let value_b = claim_b["verification_record"]["value"].as_str().unwrap();
    testkit::dns::set_txt(name, &[record_a["value"].as_str().unwrap(), value_b, "v=spf1 -all"]);
    assert_eq!(app.call("POST", &format!("{claim_path}/verify"), Some(&alice), None).await.0, 202);
    app.drain().await;
    let (_, claim) = app.call("GET", &claim_path, Some(&alice), None).await;
    assert_eq!(claim["status"], "verified", "{claim}");
    assert!(claim["verified_at_ms"].as_i64().is_some());
    assert_eq!(app.call("POST", &format!("{claim_path}/verify"), Some(&alice), None).await.0, 200);

    let b_path = format!("{domains_b}/{domain}");
    assert_eq!(app.call("POST", &format!("{b_path}/verify"), Some(&bob), None).await.0, 202);
    app.drain().await;
    let (_, claim) = app.call("GET", &b_path, Some(&bob), None).await;
    assert_eq!(
        (claim["status"].as_str(), claim["last_check"]["result"].as_str()),
        (Some("pending"), Some("claimed_by_another_organization")),
        "{claim}"
    );
    // A third organization is told at once.
    let (carol, _) = app.user("carol@example.com").await;
    let (org_c, _) = org_with_account(&app, &carol).await;
    let (status, body) = app
        .call("POST", &format!("/organizations/{org_c}/domains"), Some(&carol), Some(json!({"domain": domain})))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("domain_claimed")));

    // Released by its holder, the domain goes to the next organization that proves it.
    assert_eq!(app.call("DELETE", &claim_path, Some(&alice), None).await.0, 204);
    assert_eq!(app.call("GET", &claim_path, Some(&alice), None).await.0, 404);
    assert_eq!(app.call("POST", &format!("{b_path}/verify"), Some(&bob), None).await.0, 202);
    app.drain().await;
    let (_, claim) = app.call("GET", &b_path, Some(&bob), None).await;
    assert_eq!(claim["status"], "verified", "{claim}");
    let (_, list) = app.call("GET", &domains_b, Some(&bob), None).await;
    assert_eq!(list["domains"].as_array().unwrap().len(), 1);

    // Every step is on the organization's audit stream, which its admins read.
    assert_eq!(app.call("GET", &format!("/organizations/{org_a}/audit"), Some(&bob), None).await.0, 404);
    let (status, audit) = app.call("GET", &format!("/organizations/{org_a}/audit?limit=100"), Some(&alice), None).await;
    assert_eq!(status, 200, "{audit}");
    let audit = audit.to_string();
    for action in [
        "organization.domain_added",
        "organization.domain_check_failed",
        "organization.domain_verified",
        "organization.domain_removed",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
}

#[tokio::test]
async fn a_name_server_that_fails_leaves_the_claim_pending_and_nothing_dead_lettered() {
    let app = app().await;
    let (admin, _) = app.user("admin@example.com").await;
    let (org, _) = org_with_account(&app, &admin).await;
    let domain = fresh_domain();
    testkit::dns::fail(&format!("_groundwork-verification.{domain}"));
    let (status, _) =
        app.call("POST", &format!("/organizations/{org}/domains"), Some(&admin), Some(json!({"domain": domain}))).await;
    assert_eq!(status, 201);
    let path = format!("/organizations/{org}/domains/{domain}");
    app.drain().await;
    let (_, claim) = app.call("GET", &path, Some(&admin), None).await;
    assert_eq!(
        (claim["status"].as_str(), claim["last_check"]["result"].as_str()),
        (Some("pending"), Some("lookup_failed"))
    );
    // A tenant's broken zone pages no operator: nothing waits in the jobs' dead letters.
    let jobs = app.stack.services.queues.get(shared::config::QueueName::Jobs);
    assert_eq!(jobs.backlog().await.unwrap().dead_letters, 0);
    // Fixed, it verifies on the next check.
    let (_, claim) = app.call("GET", &path, Some(&admin), None).await;
    let record = &claim["verification_record"];
    testkit::dns::set_txt(record["name"].as_str().unwrap(), &[record["value"].as_str().unwrap()]);
    assert_eq!(app.call("POST", &format!("{path}/verify"), Some(&admin), None).await.0, 202);
    app.drain().await;
    assert_eq!(app.call("GET", &path, Some(&admin), None).await.1["status"], "verified");
}

#[tokio::test]
async fn people_at_a_verified_domain_join_ask_to_join_or_wait_for_an_invitation_per_its_mode() {
    let app = app().await;
    let (admin, _) = app.user("admin@example.com").await;
    let (org, acme) = org_with_account(&app, &admin).await;
    let domain = fresh_domain();

    // Automatic modes need an account of the organization, and never make owners.
    let path = format!("/organizations/{org}/domains");
    let (status, body) = app
        .call("POST", &path, Some(&admin), Some(json!({"domain": domain, "enrollment_mode": "automatic_invitation"})))
        .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("account_required")));
    let (_, other) = app.call("POST", "/accounts", Some(&admin), Some(json!({"name": "Not attached"}))).await;
    let not_attached = json!({"domain": domain, "enrollment_mode": "automatic_invitation", "account_id": other["id"]});
    let (status, body) = app.call("POST", &path, Some(&admin), Some(not_attached)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_account")));
    let owner = json!({"domain": domain, "role": "owner"});
    assert_eq!(app.call("POST", &path, Some(&admin), Some(owner)).await.1["code"], "invalid_role");

    let settings = json!({"enrollment_mode": "automatic_invitation", "account_id": acme, "role": "member"});
    verified(&app, &admin, &org, &domain, settings).await;
    let claim_path = format!("{path}/{domain}");

    // Automatic invitation: a new user at the domain sees the account and joins it.
    let (bob, _) = app.user(&format!("bob@{domain}")).await;
    let (status, offers) = app.call("GET", "/me/domain-enrollments", Some(&bob), None).await;
    assert_eq!(status, 200, "{offers}");
    let offer = &offers["enrollments"][0];
    assert_eq!(
        (offer["account_id"].as_str(), offer["enrollment_mode"].as_str()),
        (Some(acme.as_str()), Some("automatic_invitation"))
    );
    assert_eq!(
        (offer["account_name"].as_str(), offer["organization_name"].as_str()),
        (Some("Acme"), Some("Acme Group"))
    );
    let (status, joined) = app.call("POST", &format!("/me/domain-enrollments/{acme}"), Some(&bob), None).await;
    assert_eq!((status, joined["role"].as_str()), (200, Some("member")), "{joined}");
    let (_, accounts) = app.call("GET", "/accounts", Some(&bob), None).await;
    assert_eq!(accounts["accounts"][0]["id"], acme.as_str());
    // A member has nothing left to take; taking it again is not found.
    let (_, offers) = app.call("GET", "/me/domain-enrollments", Some(&bob), None).await;
    assert_eq!(offers["enrollments"], json!([]));
    assert_eq!(app.call("POST", &format!("/me/domain-enrollments/{acme}"), Some(&bob), None).await.0, 404);
    // Another account id is not on offer.
    assert_eq!(
        app.call("POST", &format!("/me/domain-enrollments/{}", other["id"].as_str().unwrap()), Some(&bob), None)
            .await
            .0,
        404
    );

    // Automatic suggestion: the user asks, an admin approves with the domain's role.
    let suggestion = json!({"enrollment_mode": "automatic_suggestion", "role": "read_only"});
    let (status, claim) = app.call("PATCH", &claim_path, Some(&admin), Some(suggestion)).await;
    assert_eq!((status, claim["enrollment_mode"].as_str()), (200, Some("automatic_suggestion")), "{claim}");
    let (carol, carol_id) = app.user(&format!("carol@{domain}")).await;
    let (status, request) = app.call("POST", &format!("/me/domain-enrollments/{acme}"), Some(&carol), None).await;
    assert_eq!((status, request["role"].as_str()), (202, Some("read_only")), "{request}");
    // The account's owners and admins hear of it; its members do not.
    let told = app.wait_email("admin@example.com", "asked to join Acme").await;
    assert!(told.contains(&format!("carol@{domain}")) && told.contains("/join-requests"), "{told}");
    app.drain().await;
    assert!(app.emails(&format!("bob@{domain}"), "asked to join").is_empty());
    // Asking twice is one request.
    let (status, again) = app.call("POST", &format!("/me/domain-enrollments/{acme}"), Some(&carol), None).await;
    assert_eq!((status, &again), (202, &request));
    let (_, offers) = app.call("GET", "/me/domain-enrollments", Some(&carol), None).await;
    assert_eq!(offers["enrollments"][0]["requested_at_ms"], request["requested_at_ms"]);
    assert_eq!(app.call("GET", "/accounts", Some(&carol), None).await.1["accounts"], json!([]), "not a member yet");
    // Members who do not manage members cannot see or approve requests.
    let requests = format!("/accounts/{acme}/join-requests");
    assert_eq!(app.call("GET", &requests, Some(&bob), None).await.0, 403);
    assert_eq!(app.call("POST", &format!("{requests}/{carol_id}/approve"), Some(&bob), None).await.0, 403);
    let (status, list) = app.call("GET", &requests, Some(&admin), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["join_requests"][0]["email"], format!("carol@{domain}"));
    let (status, membership) = app.call("POST", &format!("{requests}/{carol_id}/approve"), Some(&admin), None).await;
    assert_eq!((status, membership["role"].as_str()), (200, Some("read_only")), "{membership}");
    assert_eq!(app.call("GET", "/accounts", Some(&carol), None).await.1["accounts"][0]["id"], acme.as_str());
    assert_eq!(app.call("POST", &format!("{requests}/{carol_id}/approve"), Some(&admin), None).await.0, 404, "used up");

    // A declined request leaves the admins' list, and the user cannot ask again until it
    // expires.
    let (dave, dave_id) = app.user(&format!("dave@{domain}")).await;
    assert_eq!(app.call("POST", &format!("/me/domain-enrollments/{acme}"), Some(&dave), None).await.0, 202);
    assert_eq!(app.call("DELETE", &format!("{requests}/{dave_id}"), Some(&admin), None).await.0, 204);
    let (_, offers) = app.call("GET", "/me/domain-enrollments", Some(&dave), None).await;
    assert!(offers["enrollments"][0]["declined_at_ms"].as_i64().is_some(), "{offers}");
    assert_eq!(app.call("GET", &requests, Some(&admin), None).await.1["join_requests"], json!([]));
    let (status, body) = app.call("POST", &format!("/me/domain-enrollments/{acme}"), Some(&dave), None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("join_request_declined")));
    assert_eq!(app.call("POST", &format!("{requests}/{dave_id}/approve"), Some(&admin), None).await.0, 404);

    // Manual invitation: nothing is offered.
    let manual = json!({"enrollment_mode": "manual_invitation"});
    assert_eq!(app.call("PATCH", &claim_path, Some(&admin), Some(manual)).await.0, 200);
    assert_eq!(app.call("GET", "/me/domain-enrollments", Some(&dave), None).await.1["enrollments"], json!([]));
    // Nor to anyone at another domain.
    let (eve, _) = app.user("eve@example.com").await;
    assert_eq!(app.call("GET", "/me/domain-enrollments", Some(&eve), None).await.1["enrollments"], json!([]));

    // `null` clears the account; automatic modes want one back.
    let (status, claim) = app.call("PATCH", &claim_path, Some(&admin), Some(json!({"account_id": null}))).await;
    assert_eq!((status, &claim["account_id"]), (200, &Value::Null), "{claim}");
    let invite = json!({"enrollment_mode": "automatic_invitation"});
    assert_eq!(app.call("PATCH", &claim_path, Some(&admin), Some(invite)).await.1["code"], "account_required");
    // An account that leaves the organization is no longer offered: its domains fall back to
    // manual invitations.
    let back = json!({"enrollment_mode": "automatic_invitation", "account_id": acme});
    assert_eq!(app.call("PATCH", &claim_path, Some(&admin), Some(back)).await.0, 200);
    assert_eq!(app.call("DELETE", &format!("/organizations/{org}/accounts/{acme}"), Some(&admin), None).await.0, 204);
    let (_, claim) = app.call("GET", &claim_path, Some(&admin), None).await;
    assert_eq!((claim["enrollment_mode"].as_str(), &claim["account_id"]), (Some("manual_invitation"), &Value::Null));

    let audit =
        shared::audit::export_json_lines(app.stack.services.store.as_ref(), &format!("account:{acme}")).await.unwrap();
    for action in ["member.joined_via_domain", "join_request.created", "join_request.approved", "join_request.declined"]
    {
        assert!(audit.contains(action), "{action} in {audit}");
    }
}
