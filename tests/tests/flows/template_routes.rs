//! Every route the code serves is wired in `template.yaml`, and the template wires no route
//! the code does not serve: a route added to a function cannot be forgotten on AWS.

use std::collections::BTreeSet;

#[test]
fn template_routes_match_the_api_description() {
    let all = testkit::template::http_routes();
    // SCIM's endpoints are outside the API description (SCIM describes itself): one
    // catch-all, to the function that serves them.
    let scim: Vec<_> = all.iter().filter(|r| r.path == tenancy::scim::protocol::TEMPLATE_ROUTE).collect();
    assert_eq!(scim.len(), 1, "the SCIM endpoints are wired once: {scim:?}");
    assert_eq!((scim[0].method.as_str(), scim[0].function.as_str()), ("ANY", "TenancyFunction"));
    let wired: BTreeSet<(String, String)> = all
        .into_iter()
        .filter(|r| r.path != tenancy::scim::protocol::TEMPLATE_ROUTE)
        .map(|r| (r.method, r.path))
        .collect();
    assert!(!wired.is_empty(), "the template wires routes");
    let mut served = BTreeSet::new();
    for (path, item) in &platform::api_description().paths.paths {
        for (method, present) in [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ] {
            if present {
                served.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let missing: Vec<_> = served.difference(&wired).collect();
    let extra: Vec<_> = wired.difference(&served).collect();
    assert!(missing.is_empty(), "served but not in template.yaml: {missing:?}");
    assert!(extra.is_empty(), "in template.yaml but not served: {extra:?}");
}

#[test]
fn the_http_apis_cors_configuration_matches_the_local_one() {
    let template = testkit::template::template();
    let cors = &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
    // `!If [HasCorsOrigins, {...}, !Ref AWS::NoValue]`, a tagged value.
    let serde_yaml_ng::Value::Tagged(tagged) = cors else { panic!("CorsConfiguration is an !If: {cors:?}") };
    let config = &tagged.value[1];
    let strings = |key: &str| -> Vec<String> {
        config[key].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let methods: Vec<String> = shared::http::cors::ALLOWED_METHODS.iter().map(ToString::to_string).collect();
    assert_eq!(strings("AllowMethods"), methods);
    assert_eq!(strings("AllowHeaders"), shared::http::cors::ALLOWED_HEADERS);
    assert_eq!(strings("ExposeHeaders"), shared::http::cors::EXPOSED_HEADERS);
    assert_eq!(config["AllowCredentials"].as_bool(), Some(true));
    assert_eq!(config["MaxAge"].as_u64(), Some(shared::http::cors::MAX_AGE.as_secs()));
}

#[test]
fn the_functions_read_the_same_origins_as_the_http_api() {
    let template = testkit::template::template();
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    // `!Join [",", !Ref CorsAllowOrigins]`: the browser session's CSRF check allows exactly
    // the origins API Gateway answers CORS for.
    let origins = format!("{:?}", env["GROUNDWORK_CORS_ORIGINS"]);
    assert!(origins.contains("Join") && origins.contains("CorsAllowOrigins"), "{origins}");
    let same_site = format!("{:?}", env["GROUNDWORK_REFRESH_COOKIE_SAME_SITE"]);
    assert!(same_site.contains("RefreshCookieSameSite"), "{same_site}");
}

#[test]
fn every_alarm_links_a_runbook_that_exists() {
    let template = testkit::template::template();
    let runbooks = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/runbooks"));
    let index = std::fs::read_to_string(runbooks.join("README.md")).expect("the runbook index");
    let mut alarms = 0;
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        alarms += 1;
        let name = name.as_str().unwrap();
        let description = format!("{:?}", resource["Properties"]["AlarmDescription"]);
        let page = description
            .split("Runbook ${RunbookBaseUrl}/")
            .nth(1)
            .and_then(|rest| rest.split(".md").next())
            .unwrap_or_else(|| panic!("{name} links no runbook: {description}"));
        let text = std::fs::read_to_string(runbooks.join(format!("{page}.md")))
            .unwrap_or_else(|_| panic!("{name} links docs/runbooks/{page}.md, which does not exist"));
        for part in ["**What it means.**", "**First three checks.**", "**Roll back or recover.**"] {
            assert!(text.contains(part), "docs/runbooks/{page}.md lacks {part}");
        }
        assert!(index.contains(&format!("`{name}` | [{page}.md]({page}.md)")), "the runbook index lacks {name}");
    }
    assert!(alarms >= 8, "{alarms} alarms");
}

#[test]
fn the_dashboard_body_is_json_once_substituted() {
    let template = testkit::template::template();
    let body = &template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"];
    // `!Sub [text, {names}]`, a tagged value.
    let serde_yaml_ng::Value::Tagged(tagged) = body else { panic!("DashboardBody is a !Sub: {body:?}") };
    let text = tagged.value[0].as_str().expect("the body text");
    // Every `${name}` stands for a plain string (an id, a name or the region).
    let mut substituted = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        substituted.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed placeholder") + start;
        substituted.push_str("placeholder");
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let json: serde_json::Value = serde_json::from_str(&substituted).unwrap_or_else(|e| panic!("{e}: {substituted}"));
    assert_eq!(json["widgets"].as_array().map(Vec::len), Some(5));
}
