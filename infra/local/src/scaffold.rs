//! `cargo run -- new function <name>`: scaffolds a product function and registers it
//! everywhere it must be known, so adding one is one command:
//!
//! - creates `functions/<name>/` (a thin `main.rs`, a `lib.rs` with one tenant-scoped route,
//!   and a test that runs it through the local stack) from the templates in
//!   `infra/local/scaffold/function/`;
//! - lists it in `products/` (its `Cargo.toml` and the `products!` list in `src/lib.rs`),
//!   the one list the local stack, `/openapi.json` and the worker read;
//! - adds its Lambda, route and log group to `template.yaml`.
//!
//! Everything is checked before anything is written: a name that is invalid or already
//! taken (a directory, a crate or dependency of the workspace, a template resource, a route)
//! is refused with the reason and leaves every file as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

const CARGO: &str = include_str!("../scaffold/function/Cargo.toml.tmpl");
const MAIN: &str = include_str!("../scaffold/function/main.rs.tmpl");
const LIB: &str = include_str!("../scaffold/function/lib.rs.tmpl");
const TEST: &str = include_str!("../scaffold/function/test.rs.tmpl");
const TEMPLATE: &str = include_str!("../scaffold/function/template.yaml.tmpl");

/// The line of `products/Cargo.toml` new dependencies go above.
pub const DEPENDENCY_MARKER: &str = "# groundwork:product-function-dependencies";
/// The line of `products/src/lib.rs` new functions go above.
pub const LIST_MARKER: &str = "// groundwork:product-functions";
/// The line of `template.yaml` new function resources go above.
pub const TEMPLATE_MARKER: &str = "# groundwork:product-functions";

/// The repository the binary was built from (where `cargo run` scaffolds by default).
pub fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Rust's keywords, strict and reserved: a crate named so has no usable identifier.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod",
    "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
    "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Crate names Rust or the workspace reserve, besides its members and dependencies.
const RESERVED: &[&str] = &["core", "std", "alloc", "proc-macro", "test", "tests", "groundwork", "lambda", "bootstrap"];

/// Checks `name` as a function name: 2 to 32 characters, lower-case ASCII letters and
/// digits in words joined by single hyphens, starting with a letter.
///
/// # Errors
/// The reason it is not one.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let words_ok =
        name.split('-').all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if !(2..=32).contains(&name.len()) || !name.starts_with(|c: char| c.is_ascii_lowercase()) || !words_ok {
        bail!(
            "{name:?} is not a function name: 2 to 32 lower-case letters and digits, words joined by single \
             hyphens, starting with a letter (e.g. projects, time-tracking)"
        );
    }
    let ident = name.replace('-', "_");
    if KEYWORDS.contains(&ident.as_str()) || RESERVED.contains(&name) {
        bail!("{name:?} is reserved (a Rust keyword or a crate name the build relies on): choose another");
    }
    Ok(())
}

fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn render(template: &str, name: &str) -> String {
    let camel = camel(name);
    let title = name.replace('-', " ");
    let title = title[..1].to_ascii_uppercase() + &title[1..];
    template
        .replace("{{crate}}", name)
        .replace("{{ident}}", &name.replace('-', "_"))
        .replace("{{Camel}}", &camel)
        .replace("{{KIND}}", &name.replace('-', "_").to_ascii_uppercase())
        .replace("{{Title}}", &title)
}

/// Inserts `text` before the line holding `marker` (keeping that line's indentation for
/// nothing: `text` carries its own).
fn insert_before(content: &str, marker: &str, text: &str, file: &str) -> anyhow::Result<String> {
    let Some(at) = content.find(marker) else {
        bail!("{file} has no `{marker}` line: put it back where new entries go (see ARCHITECTURE.md)");
    };
    let line_start = content[..at].rfind('\n').map_or(0, |i| i + 1);
    Ok(format!("{}{text}{}", &content[..line_start], &content[line_start..]))
}

/// The names Cargo already uses in the workspace: its dependencies, and the package name of
/// every member (`members` entries, with `dir/*` globs expanded).
fn taken_crate_names(root: &Path, root_manifest: &str) -> Vec<String> {
    let Ok(value) = root_manifest.parse::<toml::Table>() else { return Vec::new() };
    let workspace = value.get("workspace");
    let mut names: Vec<String> = workspace
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    let members = workspace.and_then(|w| w.get("members")).and_then(|m| m.as_array()).cloned().unwrap_or_default();
    let mut dirs = Vec::new();
    for member in members.iter().filter_map(|m| m.as_str()) {
        match member.strip_suffix("/*") {
            Some(parent) => {
                let entries = std::fs::read_dir(root.join(parent)).into_iter().flatten().flatten();
                dirs.extend(entries.map(|e| e.path()));
            }
            None => dirs.push(root.join(member)),
        }
    }
    for dir in dirs {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        let package = manifest
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()).map(str::to_owned));
        names.extend(package);
    }
    names
}

/// What [`new_function`] did, to print.
#[derive(Debug)]
pub struct Scaffolded {
    /// Files created, relative to the root.
    pub created: Vec<String>,
    /// Files changed, relative to the root.
    pub changed: Vec<String>,
}

/// Scaffolds the product function `name` under `root` (see the module documentation).
/// `served_paths` are the API's paths today, so the new route cannot collide with one.
///
/// # Errors
/// An invalid or taken name, a missing marker line, or a file that cannot be read or
/// written; nothing is written unless every check passed.
pub fn new_function(root: &Path, name: &str, served_paths: &[String]) -> anyhow::Result<Scaffolded> {
    check_name(name)?;
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).with_context(|| format!("reading {rel}"));
    let dir = root.join("functions").join(name);
    if dir.exists() {
        bail!("functions/{name} already exists: choose another name, or remove it first");
    }
    let taken = taken_crate_names(root, &read("Cargo.toml")?);
    let ident = name.replace('-', "_");
    if taken.iter().any(|t| t == name || t.replace('-', "_") == ident) {
        bail!("{name:?} is already a crate of the workspace or one of its dependencies: choose another");
    }
    let route = format!("/accounts/{{account_id}}/{name}");
    if served_paths.iter().any(|p| *p == route || p.starts_with(&format!("{route}/"))) {
        bail!("the API already serves {route}: choose another name");
    }
    let template = read("template.yaml")?;
    let resource = format!("\n  {}Function:", camel(name));
    if template.contains(&resource) {
        bail!("template.yaml already has a {}Function resource: choose another name", camel(name));
    }
    let products_manifest = read("products/Cargo.toml")?;
    let products_list = read("products/src/lib.rs")?;
    if products_list.lines().any(|l| l.trim() == format!("{ident},")) {
        bail!("{name} is already listed in products/src/lib.rs");
    }
    let edits = [
        (
            "products/Cargo.toml",
            insert_before(
                &products_manifest,
                DEPENDENCY_MARKER,
                &format!("{name} = {{ path = \"../functions/{name}\" }}\n"),
                "products/Cargo.toml",
            )?,
        ),
        (
            "products/src/lib.rs",
            insert_before(&products_list, LIST_MARKER, &format!("    {ident},\n"), "products/src/lib.rs")?,
        ),
        ("template.yaml", insert_before(&template, TEMPLATE_MARKER, &render(TEMPLATE, name), "template.yaml")?),
    ];
    let files =
        [("Cargo.toml", CARGO), ("src/main.rs", MAIN), ("src/lib.rs", LIB), (&*format!("tests/{ident}.rs"), TEST)]
            .map(|(rel, template)| (format!("functions/{name}/{rel}"), render(template, name)));

    // Every check passed: write.
    let mut created = Vec::new();
    for (rel, content) in &files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {rel}"))?;
        created.push(rel.clone());
    }
    let mut changed = Vec::new();
    for (rel, content) in edits {
        std::fs::write(root.join(rel), content).with_context(|| format!("writing {rel}"))?;
        changed.push(rel.to_owned());
    }
    Ok(Scaffolded { created, changed })
}

/// The report `cargo run -- new function` prints.
pub fn report(name: &str, done: &Scaffolded) -> String {
    let mut out = format!("Scaffolded the product function {name}.\n\nCreated:\n");
    for f in &done.created {
        out.push_str(&format!("  {f}\n"));
    }
    out.push_str("Registered in:\n");
    for f in &done.changed {
        out.push_str(&format!("  {f}\n"));
    }
    out.push_str(&format!(
        "\nNext:\n  cargo test -p {name}    # its generated test, through the local stack\n  \
         cargo run    # serves GET /accounts/{{account_id}}/{name}\n\
         Then add routes in functions/{name}/src/lib.rs, each with an event in template.yaml,\n\
         and regenerate the TypeScript client (clients/typescript/generate.sh).\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_of_the_repository() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "Cargo.toml",
            "template.yaml",
            "products/Cargo.toml",
            "products/src/lib.rs",
            "infra/local/Cargo.toml",
            "tests/Cargo.toml",
        ] {
            let to = dir.path().join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(default_root().join(rel), to).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("functions/projects")).unwrap();
        dir
    }

    fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p.clone());
                    files.push((p, Vec::new()));
                } else {
                    files.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn a_function_is_created_and_registered_in_each_place() {
        let repo = copy_of_the_repository();
        let root = repo.path();
        let done = new_function(root, "time-tracking", &[]).unwrap();
        assert_eq!(done.changed, ["products/Cargo.toml", "products/src/lib.rs", "template.yaml"]);
        let lib = std::fs::read_to_string(root.join("functions/time-tracking/src/lib.rs")).unwrap();
        assert!(lib.contains("path = \"/accounts/{account_id}/time-tracking\""), "{lib}");
        assert!(lib.contains("pub const KIND: &str = \"TIME_TRACKING\""));
        assert!(!lib.contains("{{"), "every placeholder is filled");
        let main = std::fs::read_to_string(root.join("functions/time-tracking/src/main.rs")).unwrap();
        assert!(main.contains("time_tracking::app(services)"));
        assert!(root.join("functions/time-tracking/tests/time_tracking.rs").exists());
        let list = std::fs::read_to_string(root.join("products/src/lib.rs")).unwrap();
        assert!(list.contains("    time_tracking,\n    // groundwork:product-functions"), "{list}");
        let manifest = std::fs::read_to_string(root.join("products/Cargo.toml")).unwrap();
        assert!(manifest.contains("time-tracking = { path = \"../functions/time-tracking\" }\n# groundwork:"));
        manifest.parse::<toml::Table>().expect("still TOML");
        let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&template).expect("still YAML");
        let function = &yaml["Resources"]["TimeTrackingFunction"];
        assert_eq!(function["Properties"]["CodeUri"].as_str(), Some("functions/time-tracking"));
        let event = &function["Properties"]["Events"]["ListTimeTracking"]["Properties"];
        assert_eq!(event["Path"].as_str(), Some("/accounts/{account_id}/time-tracking"));
        assert!(yaml["Resources"]["TimeTrackingFunctionLogGroup"].is_mapping());
    }

    #[test]
    fn invalid_or_taken_names_change_nothing() {
        let repo = copy_of_the_repository();
        let root = repo.path();
        let before = snapshot(root);
        let served = vec!["/accounts/{account_id}/members".to_owned()];
        for (name, why) in [
            ("Projects", "not a function name"),
            ("a", "not a function name"),
            ("9lives", "not a function name"),
            ("two--hyphens", "not a function name"),
            ("trailing-", "not a function name"),
            ("white space", "not a function name"),
            ("../escape", "not a function name"),
            ("type", "reserved"),
            ("std", "reserved"),
            ("projects", "already exists"),
            ("shared", "already a crate"),
            ("local", "already a crate"),
            ("testkit", "already a crate"),
            ("products", "already a crate"),
            ("tokio", "already a crate"),
            ("members", "already serves"),
        ] {
            let err = new_function(root, name, &served).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
            assert_eq!(snapshot(root), before, "{name} changed nothing");
        }
        // A marker that was removed: refused before anything is written.
        let list = root.join("products/src/lib.rs");
        std::fs::write(&list, std::fs::read_to_string(&list).unwrap().replace(LIST_MARKER, "")).unwrap();
        let before = snapshot(root);
        let err = new_function(root, "billing-reports", &[]).unwrap_err().to_string();
        assert!(err.contains("groundwork:product-functions"), "{err}");
        assert_eq!(snapshot(root), before);
    }

    #[test]
    fn a_second_run_with_the_same_name_is_refused() {
        let repo = copy_of_the_repository();
        new_function(repo.path(), "demo", &[]).unwrap();
        let err = new_function(repo.path(), "demo", &[]).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }
}
