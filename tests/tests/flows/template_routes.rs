//! Every route the code serves is wired in `template.yaml`, and the template wires no route
//! the code does not serve: a route added to a function cannot be forgotten on AWS.

use std::collections::BTreeSet;

#[test]
fn template_routes_match_the_api_description() {
    let wired: BTreeSet<(String, String)> =
        testkit::template::http_routes().into_iter().map(|r| (r.method, r.path)).collect();
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
