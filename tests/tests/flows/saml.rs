//! SAML 2.0 login against a real identity provider on loopback (npm `samlify`, started by the
//! test command as infra/saml/idp.mjs): SP- and IdP-initiated logins through its HTTP-Redirect
//! and HTTP-POST bindings, a certificate rollover, and the attacks: the signature-wrapping
//! variants of the published catalogues (XSW1-XSW8, Somorovsky et al. 2012; SAML Raider),
//! comment truncation (CVE-2017-11427), XML entities, replays, wrong keys, windows and
//! audiences.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use testkit::app::TestApp;

const LOOPBACK: (&str, &str) = ("GROUNDWORK_OUTBOUND_ALLOW_LOOPBACK", "true");

fn idp() -> String {
    std::env::var("GROUNDWORK_SAML_IDP_URL").unwrap_or_else(|_| {
        panic!("GROUNDWORK_SAML_IDP_URL is not set: run the suite with ./infra/test.sh, which starts the IdP")
    })
}

/// An organization with account Acme (just-in-time membership) and a SAML connection to
/// the loopback IdP by metadata URL; `extra` is merged into the settings.
async fn saml_org(app: &TestApp, admin: &str, extra: Value) -> (String, String) {
    let (org_id, acme) = crate::domains::org_with_account(app, admin).await;
    configure(app, admin, &org_id, &acme, extra).await;
    (org_id, acme)
}

async fn configure(app: &TestApp, admin: &str, org: &str, acme: &str, extra: Value) -> Value {
    let mut settings = json!({"metadata_url": format!("{}/metadata", idp()), "allowed_domains": ["acme.test"],
                              "jit_account_id": acme, "jit_role": "member"});
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    let (status, body) = app.call("PUT", &format!("/organizations/{org}/saml"), Some(admin), Some(settings)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A browser logged in at the IdP as `email`, with the options of its next response.
async fn idp_session(email: &str, options: &[(&str, &str)]) -> reqwest::Client {
    let browser = testkit::app::browser();
    let mut form = vec![("email", email), ("first_name", "Carol"), ("last_name", "Danvers")];
    form.extend_from_slice(options);
    let res = browser.post(format!("{}/login", idp())).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    browser
}

/// The IdP's auto-submitting form: (action, SAMLResponse, RelayState).
fn form(html: &str) -> (String, String, Option<String>) {
    let attr = |after: &str, name: &str| -> Option<String> {
        let at = html.find(after)?;
        let rest = &html[at..];
        let start = rest.find(&format!("{name}=\""))? + name.len() + 2;
        Some(rest[start..start + rest[start..].find('"')?].replace("&amp;", "&").replace("&quot;", "\""))
    };
    let action = attr("<form", "action").expect("a form");
    let response = attr("name=\"SAMLResponse\"", "value").expect("a SAMLResponse");
    (action, response, attr("name=\"RelayState\"", "value"))
}

/// An SP-initiated login up to the IdP's answer: our `/start`, then the IdP's form.
async fn sp_initiated(app: &TestApp, org: &str, email: &str, options: &[(&str, &str)]) -> (String, Option<String>) {
    let start = format!("{}/auth/saml/{org}/start?relay_state=%2Fafter", app.base);
    let res = testkit::app::browser().get(start).send().await.unwrap();
    assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/sso?SAMLRequest=", idp())), "{location}");
    let browser = idp_session(email, options).await;
    let res = browser.get(location).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (action, response, relay) = form(&res.text().await.unwrap());
    assert_eq!(action, format!("{}/auth/saml/{org}/acs", app.base));
    (response, relay)
}

async fn idp_initiated(app: &TestApp, org: &str, email: &str) -> String {
    let browser = idp_session(email, &[]).await;
    let sp = format!("{}/auth/saml/{org}/metadata", app.base);
    let res = browser.get(format!("{}/initiate", idp())).query(&[("sp", sp.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), 200);
    form(&res.text().await.unwrap()).1
}

async fn post(app: &TestApp, org: &str, response: &str) -> (u16, Value) {
    let res = app
        .client
        .post(format!("{}/auth/saml/{org}/acs", app.base))
        .form(&[("SAMLResponse", response), ("RelayState", "/after")])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

fn refused(answer: &(u16, Value), code: &str) {
    assert_eq!((answer.0, answer.1["code"].as_str()), (400, Some(code)), "{}", answer.1);
}

fn decode(response: &str) -> String {
    String::from_utf8(STANDARD.decode(response).unwrap()).unwrap()
}

fn encode(xml: &str) -> String {
    STANDARD.encode(xml)
}

#[tokio::test]
async fn sp_initiated_login_signs_in_joins_the_account_and_checks_every_condition() {
    let app = TestApp::spawn(&[LOOPBACK]).await;
    let (admin, _) = app.user("admin@acme.test").await;
    let (org, acme) = saml_org(&app, &admin, json!({})).await;
    let (_, view) = app.call("GET", &format!("/organizations/{org}/saml"), Some(&admin), None).await;
    assert_eq!(view["acs_url"], format!("{}/auth/saml/{org}/acs", app.base));
    assert_eq!(view["idp_entity_id"], format!("{}/metadata", idp()));
    assert_eq!(view["idp_certificates"].as_array().unwrap().len(), 1);
    // Our metadata, as IdPs import it.
    let metadata = app.client.get(view["sp_metadata_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(metadata.headers()["content-type"], "application/samlmetadata+xml");
    assert!(metadata.text().await.unwrap().contains(&format!("Location=\"{}/auth/saml/{org}/acs\"", app.base)));

    let (response, relay) = sp_initiated(&app, &org, "carol@acme.test", &[]).await;
    assert_eq!(relay.as_deref(), Some("/after"));
    let (status, tokens) = post(&app, &org, &response).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let (_, me) = app.call("GET", "/me", Some(access), None).await;
    assert_eq!((me["email"].as_str(), me["email_verified"].as_bool()), (Some("carol@acme.test"), Some(true)));
    assert_eq!(me["name"], "Carol Danvers");
    let (_, accounts) = app.call("GET", "/accounts", Some(access), None).await;
    assert_eq!(
        (accounts["accounts"][0]["id"].as_str(), accounts["accounts"][0]["role"].as_str()),
        (Some(acme.as_str()), Some("member"))
    );
    // The same response again: its request was answered already.
    refused(&post(&app, &org, &response).await, "saml_unknown_request");
    // An unsolicited response, while the organization does not accept them.
    refused(&post(&app, &org, &idp_initiated(&app, &org, "carol@acme.test").await).await, "saml_unsolicited");

    // Each signing placement the IdP offers works, and signs in the same person.
    for sign in ["response", "both"] {
        let (response, _) = sp_initiated(&app, &org, "carol@acme.test", &[("sign", sign)]).await;
        let (status, again) = post(&app, &org, &response).await;
        assert_eq!(status, 200, "sign={sign}: {again}");
        let (_, me2) = app.call("GET", "/me", Some(again["access_token"].as_str().unwrap()), None).await;
        assert_eq!(me2["id"], me["id"]);
    }
    let elsewhere = "https://someone-else.example/acs";
    let cases: [(&[(&str, &str)], &str); 13] = [
        (&[("sign", "none")], "saml_unsigned"),
        (&[("key", "rogue")], "saml_signature_invalid"),
        (&[("key", "rollover")], "saml_signature_invalid"),
        // SHA-1 is refused even from the configured key, in either placement.
        (&[("algorithm", "sha1")], "saml_signature_invalid"),
        (&[("algorithm", "sha1"), ("sign", "response")], "saml_signature_invalid"),
        (&[("destination", elsewhere), ("sign", "response")], "saml_destination"),
        (&[("recipient", elsewhere)], "saml_recipient"),
        (&[("issuer", "https://another-idp.example/metadata"), ("sign", "both")], "saml_issuer"),
        (&[("status", "Requester")], "saml_status"),
        (&[("not_on_or_after_offset", "-600")], "saml_expired"),
        (&[("not_before_offset", "600")], "saml_not_yet_valid"),
        (&[("audience", "https://someone-else.example/metadata")], "saml_audience"),
        (&[("encrypt", "1")], "saml_encrypted_assertion"),
    ];
    for (options, code) in cases {
        let (response, _) = sp_initiated(&app, &org, "carol@acme.test", options).await;
        refused(&post(&app, &org, &response).await, code);
    }
    // An address outside the organization's domains: refused, and no user is made.
    let (response, _) = sp_initiated(&app, &org, "mallory@evil.test", &[]).await;
    let (status, body) = post(&app, &org, &response).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("domain_not_allowed")), "{body}");
    // The admin's own address (held with a password) while the domain is not verified.
    let (response, _) = sp_initiated(&app, &org, "admin@acme.test", &[]).await;
    let (status, body) = post(&app, &org, &response).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("domain_not_verified")), "{body}");

    // A rollover: the IdP publishes its next certificate; re-reading the metadata trusts both.
    let rollover = json!({"metadata_url": format!("{}/metadata?rollover=1", idp())});
    let view = configure(&app, &admin, &org, &acme, rollover).await;
    assert_eq!(view["idp_certificates"].as_array().unwrap().len(), 2);
    let (response, _) = sp_initiated(&app, &org, "carol@acme.test", &[("key", "rollover")]).await;
    assert_eq!(post(&app, &org, &response).await.0, 200);

    // Every refusal is on the organization's audit stream as a failed login.
    let (_, audit) = app.call("GET", &format!("/organizations/{org}/audit?limit=100"), Some(&admin), None).await;
    let failures: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "organization.saml_login_failed")
        .filter_map(|e| e["detail"]["reason"].as_str())
        .collect();
    for code in ["saml_unknown_request", "saml_unsolicited", "saml_unsigned", "saml_signature_invalid", "saml_expired"]
    {
        assert!(failures.contains(&code), "{code} not audited: {failures:?}");
    }
    // Settings are the organization's admins' alone.
    let (stranger, _) = app.user("stranger@elsewhere.test").await;
    let path = format!("/organizations/{org}/saml");
    let hijack = json!({"metadata_url": format!("{}/metadata", idp()), "allowed_domains": ["acme.test"]});
    assert_eq!(app.call("GET", &path, Some(&stranger), None).await.0, 404);
    assert_eq!(app.call("PUT", &path, Some(&stranger), Some(hijack)).await.0, 404);
    assert_eq!(app.call("DELETE", &path, Some(&stranger), None).await.0, 404);
    // A member of the organization's account who is not its admin: no more than a stranger.
    assert_eq!(app.call("GET", &path, Some(access), None).await.0, 404);
    // Removing the connection ends its logins.
    assert_eq!(app.call("DELETE", &format!("/organizations/{org}/saml"), Some(&admin), None).await.0, 204);
    assert_eq!(app.call("DELETE", &format!("/organizations/{org}/saml"), Some(&admin), None).await.0, 204);
    assert_eq!(app.client.get(format!("{}/auth/saml/{org}/start", app.base)).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn idp_initiated_login_works_once_when_the_organization_allows_it() {
    let app = TestApp::spawn(&[LOOPBACK]).await;
    let (admin, _) = app.user("admin@acme.test").await;
    let (org, _) = saml_org(&app, &admin, json!({"allow_idp_initiated": true, "require_signed_assertion": true})).await;
    let response = idp_initiated(&app, &org, "dana@acme.test").await;
    let (status, tokens) = post(&app, &org, &response).await;
    assert_eq!(status, 200, "{tokens}");
    let (_, me) = app.call("GET", "/me", Some(tokens["access_token"].as_str().unwrap()), None).await;
    assert_eq!(me["email"], "dana@acme.test");
    // The same assertion twice is a replay.
    refused(&post(&app, &org, &response).await, "saml_replay");
    // With require_signed_assertion, a signed response around an unsigned assertion is not enough.
    let (response, _) = sp_initiated(&app, &org, "dana@acme.test", &[("sign", "response")]).await;
    refused(&post(&app, &org, &response).await, "saml_unsigned");
}

/// The elements of a samlify response, by their markers.
fn split_assertion(xml: &str) -> (usize, usize) {
    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    (start, end)
}

fn assertion_id(xml: &str) -> String {
    let (start, _) = split_assertion(xml);
    let at = xml[start..].find(" ID=\"").unwrap() + start + 5;
    xml[at..at + xml[at..].find('"').unwrap()].to_owned()
}

/// The assertion with its signature removed, another ID and another subject: what an
/// attacker wants the SP to read.
fn evil_assertion(original: &str, id: &str) -> String {
    let mut evil = original.replace("carol@acme.test", "admin@acme.test");
    if let (Some(s), Some(e)) = (evil.find("<ds:Signature"), evil.find("</ds:Signature>")) {
        evil.replace_range(s..e + "</ds:Signature>".len(), "");
    }
    evil.replacen(&format!("ID=\"{}\"", assertion_id(original)), &format!("ID=\"{id}\""), 1)
}

#[tokio::test]
async fn signature_wrapping_comment_truncation_and_entities_are_refused() {
    let app = TestApp::spawn(&[LOOPBACK]).await;
    let (admin, _) = app.user("admin@acme.test").await;
    let (org, _) = saml_org(&app, &admin, json!({"allow_idp_initiated": true})).await;

    // Signed assertion (the common case), unsolicited so each variant needs no fresh request.
    let signed_assertion = decode(&idp_initiated(&app, &org, "carol@acme.test").await);
    let (a_start, a_end) = split_assertion(&signed_assertion);
    let original = &signed_assertion[a_start..a_end];
    let id = assertion_id(&signed_assertion);
    let mut variants: Vec<(&str, String)> = Vec::new();
    // XSW (assertion): an evil sibling before or after the signed one, with a fresh or the same ID.
    for (name, evil_id, before) in [
        ("evil sibling first", "_evil", true),
        ("evil sibling last", "_evil", false),
        ("evil sibling reusing the signed ID", id.as_str(), true),
    ] {
        let evil = evil_assertion(original, evil_id);
        let mut xml = signed_assertion.clone();
        xml.insert_str(if before { a_start } else { a_end }, &evil);
        variants.push((name, xml));
    }
    // XSW3-XSW8: the signed assertion hidden inside the evil one (in its Subject, in its
    // Signature's Object, in Extensions), the evil one where the SP looks.
    let evil = evil_assertion(original, "_evil");
    for (name, host) in
        [("signed inside evil subject", "</saml:Subject>"), ("signed after evil issuer", "</saml:Issuer>")]
    {
        let at = evil.find(host).unwrap() + host.len();
        let mut wrapped = evil.clone();
        wrapped.insert_str(at, original);
        let mut xml = signed_assertion.clone();
        xml.replace_range(a_start..a_end, &wrapped);
        variants.push((name, xml));
    }
    {
        let object = format!(
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:Object>{original}</ds:Object></ds:Signature>"
        );
        let mut wrapped = evil.clone();
        let at = wrapped.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
        wrapped.insert_str(at, &object);
        let mut xml = signed_assertion.clone();
        xml.replace_range(a_start..a_end, &wrapped);
        variants.push(("signed inside an Object of the evil one", xml));
        let mut xml = signed_assertion.clone();
        let extensions = format!("<samlp:Extensions>{original}</samlp:Extensions>");
        xml.replace_range(a_start..a_end, &format!("{extensions}{evil}"));
        variants.push(("signed in Extensions, evil in place", xml));
    }
    // The signed content changed (the digest no longer matches).
    variants.push(("subject changed", signed_assertion.replacen("carol@acme.test", "admin@acme.test", 1)));
    // The signature stripped.
    {
        let mut xml = signed_assertion.clone();
        let (s, e) = (xml.find("<ds:Signature").unwrap(), xml.find("</ds:Signature>").unwrap());
        xml.replace_range(s..e + "</ds:Signature>".len(), "");
        variants.push(("signature stripped", xml.replacen("carol@acme.test", "admin@acme.test", 1)));
    }
    // The signature pointed at another element.
    variants.push(("reference retargeted", signed_assertion.replacen(&format!("URI=\"#{id}\""), "URI=\"\"", 1)));
    // Entities: an external entity and an expansion bomb need a DTD.
    variants.push((
        "external entity",
        format!("<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}", signed_assertion),
    ));
    for (name, xml) in variants {
        let (status, body) = post(&app, &org, &encode(&xml)).await;
        assert_eq!(status, 400, "{name}: {body}");
        let code = body["code"].as_str().unwrap();
        // Refused for what was done to it, not because the splice broke the XML.
        assert!(code.starts_with("saml_") && code != "saml_malformed", "{name}: {body}");
    }

    // Signed response (XSW1/XSW2): the signed response moved inside an evil one's signature,
    // or kept as a sibling; the evil assertion where the SP looks.
    let signed_response = decode(&sp_initiated(&app, &org, "carol@acme.test", &[("sign", "response")]).await.0);
    let (r_start, r_end) = split_assertion(&signed_response);
    let evil = evil_assertion(&signed_response[r_start..r_end], "_evil");
    let evil_response = {
        let mut xml = signed_response.clone();
        xml.replace_range(r_start..r_end, &evil);
        let (s, e) = (xml.find("<ds:Signature").unwrap(), xml.find("</ds:Signature>").unwrap());
        xml.replace_range(s..e + "</ds:Signature>".len(), "");
        xml.replacen(" ID=\"", " ID=\"_evil_response", 1)
    };
    let xsw1 = {
        let inner = format!(
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:Object>{signed_response}</ds:Object></ds:Signature>"
        );
        let mut xml = evil_response.clone();
        let at = xml.find('>').unwrap() + 1;
        xml.insert_str(at, &inner);
        xml
    };
    let xsw2 = {
        let mut xml = evil_response.clone();
        xml.insert_str(xml.find('>').unwrap() + 1, &signed_response);
        xml
    };
    for (name, xml) in [("XSW1", xsw1), ("XSW2", xsw2)] {
        let (status, body) = post(&app, &org, &encode(&xml)).await;
        assert_eq!(status, 400, "{name}: {body}");
    }
    // The untouched documents sign in, so each refusal above came from its tampering.
    for (name, xml) in [("signed assertion", &signed_assertion), ("signed response", &signed_response)] {
        let (status, body) = post(&app, &org, &encode(xml)).await;
        assert_eq!(status, 200, "{name}: {body}");
    }

    // Comment truncation: the IdP vouches for carol@acme.test.evil.test; a comment makes a
    // naive reader see carol@acme.test while the signature still verifies.
    let truncated = decode(&idp_initiated(&app, &org, "carol@acme.test.evil.test").await)
        .replace("carol@acme.test.evil.test", "carol@acme.test<!---->.evil.test");
    refused(&post(&app, &org, &encode(&truncated)).await, "saml_malformed");
    // Untouched, the same assertion verifies and names the address it really vouches for.
    let honest = idp_initiated(&app, &org, "carol@acme.test.evil.test").await;
    let (status, body) = post(&app, &org, &honest).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("domain_not_allowed")), "{body}");

    // Not base64, not XML, too large: a problem, never a 500.
    refused(&post(&app, &org, "%%%").await, "saml_malformed");
    refused(&post(&app, &org, &encode("<not-xml")).await, "saml_malformed");
    refused(&post(&app, &org, &"A".repeat(300 * 1024)).await, "saml_malformed");
    // Metadata with a DTD is refused at configuration.
    let bad = json!({"metadata_xml": "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>",
                     "allowed_domains": ["acme.test"]});
    let (status, body) = app.call("PUT", &format!("/organizations/{org}/saml"), Some(&admin), Some(bad)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("saml_dtd_refused")), "{body}");
}

#[tokio::test]
async fn a_domain_requiring_sso_admits_through_saml_and_keeps_its_connection() {
    let dns = testkit::dns::server();
    let app = TestApp::spawn(&[LOOPBACK, ("GROUNDWORK_DNS_RESOLVER", &dns)]).await;
    let domain = crate::domains::fresh_domain();
    let erin = format!("erin@{domain}");
    // Erin signed up with a password before her organization chose SAML.
    let (_, erin_id) = app.user(&erin).await;
    let (admin, _) = app.user("admin@acme.test").await;
    let (org, acme) = saml_org(&app, &admin, json!({})).await;
    // Another organization's IdP linked Frank at that domain before it was verified; once
    // it is, only the holder's IdP speaks for him.
    let frank = format!("frank@{domain}");
    let (other_admin, _) = app.user("admin@beta.test").await;
    let (other, other_acme) = crate::domains::org_with_account(&app, &other_admin).await;
    configure(&app, &other_admin, &other, &other_acme, json!({"allowed_domains": [domain]})).await;
    let (response, _) = sp_initiated(&app, &other, &frank, &[]).await;
    assert_eq!(post(&app, &other, &response).await.0, 200);
    crate::domains::verified(&app, &admin, &org, &domain, json!({})).await;
    let (response, _) = sp_initiated(&app, &other, &frank, &[]).await;
    let (status, body) = post(&app, &other, &response).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("domain_not_allowed")), "{body}");

    // A SAML connection is SSO enough to require.
    let domain_path = format!("/organizations/{org}/domains/{domain}");
    assert_eq!(app.call("PATCH", &domain_path, Some(&admin), Some(json!({"require_sso": true}))).await.0, 200);
    let login = json!({"email": erin, "password": testkit::app::PASSWORD});
    let (status, body) = app.call("POST", "/auth/login", None, Some(login.clone())).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("sso_required")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains(&format!("/auth/saml/{org}/start")), "{body}");

    // The IdP signs her in as the same user (the domain is verified, so linking is safe).
    let (response, _) = sp_initiated(&app, &org, &erin, &[]).await;
    let (status, tokens) = post(&app, &org, &response).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.call("GET", "/me", Some(access), None).await.1["id"], erin_id.as_str());
    assert_eq!(app.call("GET", "/accounts", Some(access), None).await.1["accounts"][0]["id"], acme.as_str());

    // Removing the only connection while the domain requires it would lock everyone out.
    let (status, body) = app.call("DELETE", &format!("/organizations/{org}/saml"), Some(&admin), None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("sso_required_by_domain")), "{body}");
    assert_eq!(app.call("PATCH", &domain_path, Some(&admin), Some(json!({"require_sso": false}))).await.0, 200);
    assert_eq!(app.call("DELETE", &format!("/organizations/{org}/saml"), Some(&admin), None).await.0, 204);
    assert_eq!(app.call("POST", "/auth/login", None, Some(login)).await.0, 200);
}

/// What a first user's trial found: addresses in the forms IdPs send them, an unsigned
/// `InResponseTo`, a SHA-1 digest, Entra ID's byte order mark, an account that left the
/// organization, and refusals after the signature verified.
#[tokio::test]
async fn addresses_requests_digests_and_detached_accounts_follow_the_rules() {
    let app = TestApp::spawn(&[LOOPBACK]).await;
    let (admin, _) = app.user("admin@acme.test").await;
    let (org, acme) = saml_org(&app, &admin, json!({})).await;

    // An address as the IdP's directory holds it is the same person in any case.
    let (response, _) = sp_initiated(&app, &org, "Dave@ACME.test", &[]).await;
    let (status, first) = post(&app, &org, &response).await;
    assert_eq!(status, 200, "{first}");
    let (_, me) = app.call("GET", "/me", Some(first["access_token"].as_str().unwrap()), None).await;
    assert_eq!(me["email"], "dave@acme.test");
    let (response, _) = sp_initiated(&app, &org, "dave@acme.test", &[]).await;
    let (status, again) = post(&app, &org, &response).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(app.call("GET", "/me", Some(again["access_token"].as_str().unwrap()), None).await.1["id"], me["id"]);

    // The response's InResponseTo is outside the signature when only the assertion is
    // signed: copying a live request's id onto an unsolicited response does not make it an
    // answer.
    let (solicited, _) = sp_initiated(&app, &org, "carol@acme.test", &[]).await;
    let xml = decode(&solicited);
    let at = xml.find("InResponseTo=\"").unwrap() + "InResponseTo=\"".len();
    let request_id = &xml[at..at + xml[at..].find('"').unwrap()];
    let unsolicited = decode(&idp_initiated(&app, &org, "carol@acme.test").await);
    assert!(!unsolicited.contains("InResponseTo"));
    let forged =
        unsolicited.replacen("<samlp:Response ", &format!("<samlp:Response InResponseTo=\"{request_id}\" "), 1);
    assert_ne!(forged, unsolicited);
    refused(&post(&app, &org, &STANDARD.encode(&forged)).await, "saml_unsolicited");

    // A SHA-1 digest under an RSA-SHA256 signature, in either placement.
    for sign in ["assertion", "response"] {
        let (response, _) = sp_initiated(&app, &org, "carol@acme.test", &[("digest", "sha1"), ("sign", sign)]).await;
        assert!(decode(&response).contains("xmldsig#sha1\""), "the IdP did not use a SHA-1 digest");
        refused(&post(&app, &org, &response).await, "saml_signature_invalid");
    }

    // Entra ID's metadata starts with a byte order mark.
    let metadata = reqwest::get(format!("{}/metadata", idp())).await.unwrap().text().await.unwrap();
    let view = configure(
        &app,
        &admin,
        &org,
        &acme,
        json!({"metadata_url": null, "metadata_xml": format!("\u{feff}{metadata}")}),
    )
    .await;
    assert_eq!(view["idp_entity_id"], format!("{}/metadata", idp()));

    // A refusal after the signature verified is audited too, naming whom the IdP sent.
    let (response, _) = sp_initiated(&app, &org, "mallory@evil.test", &[]).await;
    assert_eq!(post(&app, &org, &response).await.1["code"], "domain_not_allowed");
    let (_, audit) = app.call("GET", &format!("/organizations/{org}/audit?limit=100"), Some(&admin), None).await;
    let named = audit["events"].as_array().unwrap().iter().any(|e| {
        e["action"] == "organization.saml_login_failed"
            && e["detail"]["reason"] == "domain_not_allowed"
            && e["detail"]["name_id"] == "mallory@evil.test"
    });
    assert!(named, "{audit}");

    // An account detached from the organization leaves its just-in-time membership.
    let detach = format!("/organizations/{org}/accounts/{acme}");
    assert_eq!(app.call("DELETE", &detach, Some(&admin), None).await.0, 204);
    let (_, view) = app.call("GET", &format!("/organizations/{org}/saml"), Some(&admin), None).await;
    assert_eq!(view["jit_account_id"], Value::Null, "{view}");
    let (response, _) = sp_initiated(&app, &org, "erin@acme.test", &[]).await;
    let (status, tokens) = post(&app, &org, &response).await;
    assert_eq!(status, 200, "{tokens}");
    let (_, accounts) = app.call("GET", "/accounts", Some(tokens["access_token"].as_str().unwrap()), None).await;
    assert_eq!(accounts["accounts"], json!([]), "{accounts}");
}

/// What a second trial found: an IdP creating a user ahead of the address's owner, another
/// organization cancelling a login in progress, seats, and a parser-bound flood.
#[tokio::test]
async fn an_idp_keeps_no_way_in_past_the_owner_seats_hold_and_requests_stay_their_organizations() {
    let app = TestApp::spawn(&[LOOPBACK]).await;
    let (admin, _) = app.user("admin@acme.test").await;
    let (org, _) = saml_org(&app, &admin, json!({})).await;

    // The IdP makes Bob at a domain its organization never verified; Bob, the mailbox's
    // owner, later sets a password by the reset link: the IdP no longer signs him in.
    let (response, _) = sp_initiated(&app, &org, "bob@acme.test", &[]).await;
    assert_eq!(post(&app, &org, &response).await.0, 200);
    let forgot = json!({"email": "bob@acme.test"});
    assert_eq!(app.call("POST", "/auth/password/forgot", None, Some(forgot)).await.0, 202);
    let token = app.token_from_email("bob@acme.test", "Reset your").await;
    let reset = json!({"token": token, "password": "copper-lantern-meadow-81"});
    assert_eq!(app.call("POST", "/auth/password/reset", None, Some(reset)).await.0, 204);
    let (response, _) = sp_initiated(&app, &org, "bob@acme.test", &[]).await;
    let (status, body) = post(&app, &org, &response).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("domain_not_verified")), "{body}");

    // The account's plan has three seats: the admin, Bob and one more. The next person signs
    // in without a membership, and the account's audit says why.
    for (email, members) in [("c1@acme.test", 1), ("c2@acme.test", 0)] {
        let (response, _) = sp_initiated(&app, &org, email, &[]).await;
        let (status, tokens) = post(&app, &org, &response).await;
        assert_eq!(status, 200, "{tokens}");
        let (_, accounts) = app.call("GET", "/accounts", Some(tokens["access_token"].as_str().unwrap()), None).await;
        assert_eq!(accounts["accounts"].as_array().unwrap().len(), members, "{email}: {accounts}");
    }

    // A response for this organization's login, re-addressed by its IdP to another
    // organization's ACS, is refused there and leaves the login in progress untouched.
    let (other_admin, _) = app.user("admin@beta.test").await;
    let (other, other_acme) = crate::domains::org_with_account(&app, &other_admin).await;
    configure(&app, &other_admin, &other, &other_acme, json!({"allowed_domains": ["acme.test"]})).await;
    let start = format!("{}/auth/saml/{org}/start", app.base);
    let res = testkit::app::browser().get(start).send().await.unwrap();
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let other_acs = format!("{}/auth/saml/{other}/acs", app.base);
    let other_entity = format!("{}/auth/saml/{other}/metadata", app.base);
    let readdressed = [("destination", other_acs.as_str()), ("recipient", &other_acs), ("audience", &other_entity)];
    let browser = idp_session("carol@acme.test", &readdressed).await;
    let (_, stolen, _) = form(&browser.get(&location).send().await.unwrap().text().await.unwrap());
    refused(&post(&app, &other, &stolen).await, "saml_unknown_request");
    let browser = idp_session("carol@acme.test", &[]).await;
    let (_, genuine, _) = form(&browser.get(&location).send().await.unwrap().text().await.unwrap());
    assert_eq!(post(&app, &org, &genuine).await.0, 200);

    // One element with thousands of attributes is refused before the parser sees it.
    let attributes: String = (0..5000).map(|i| format!(" a{i}=\"\"")).collect();
    let flood = format!("<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"{attributes}/>");
    refused(&post(&app, &org, &STANDARD.encode(flood)).await, "saml_malformed");
}
