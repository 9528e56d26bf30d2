//! Every route the code serves is wired in `template.yaml`, and the template wires no route
//! the code does not serve: a route added to a function cannot be forgotten on AWS.

use std::collections::BTreeSet;

#[test]
fn template_routes_match_the_api_description() {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let lines: Vec<&str> = template.lines().map(str::trim).collect();
    let mut wired = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        if *line != "Type: HttpApi" {
            continue;
        }
        let block = &lines[i..(i + 8).min(lines.len())];
        let method = block.iter().find_map(|l| l.strip_prefix("Method: ")).expect("an HttpApi event has a method");
        let path = block.iter().find_map(|l| l.strip_prefix("Path: ")).expect("an HttpApi event has a path");
        wired.insert((method.to_uppercase(), path.to_owned()));
    }
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
