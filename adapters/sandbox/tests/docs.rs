//! `docs/sandboxes.md` lists exactly the control routes each sandbox registers.

use std::collections::BTreeSet;
use std::path::Path;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The sandbox's section of the document and the source file of its router.
const SANDBOXES: [(&str, &str); 5] = [
    ("HubSpot", "src/router.rs"),
    ("Salesforce", "src/salesforce/router.rs"),
    ("Pipedrive", "src/pipedrive/mod.rs"),
    ("Generic", "src/generic/mod.rs"),
    ("Zoho", "src/zoho/mod.rs"),
];

/// `METHOD /_sandbox/...` for every `.route("/_sandbox/...", …)` call in `source`.
fn registered(source: &str) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for (at, _) in source.match_indices(".route(") {
        let start = at + ".route(".len();
        let mut depth = 1;
        let mut end = start;
        for (i, c) in source[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = start + i;
                break;
            }
        }
        let call = &source[start..end];
        let Some(path) = call
            .split('"')
            .nth(1)
            .filter(|p| p.starts_with("/_sandbox/"))
        else {
            continue;
        };
        for method in METHODS {
            let token = format!("{method}(");
            let used = call.match_indices(&token).any(|(i, _)| {
                !call[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if used {
                routes.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes
}

/// Every `` `METHOD /_sandbox/...` `` in the section `## {name}` of the document.
fn documented(doc: &str, name: &str) -> BTreeSet<String> {
    let heading = format!("\n## {name}\n");
    let start = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let section = &doc[start + heading.len()..];
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| {
            let mut words = code.split(' ');
            let method = words.next().unwrap_or_default();
            METHODS.contains(&method.to_lowercase().as_str())
                && words.next().is_some_and(|p| p.starts_with("/_sandbox/"))
        })
        .map(|code| code.split('?').next().unwrap_or(code).to_string())
        .collect()
}

#[test]
fn every_control_route_is_documented_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../../docs/sandboxes.md")).expect("the doc");
    for (name, file) in SANDBOXES {
        let source = std::fs::read_to_string(root.join(file)).expect("the router");
        let routes = registered(&source);
        assert!(
            routes.len() >= 5,
            "{name}: routes found in {file}: {routes:?}"
        );
        assert_eq!(
            documented(&doc, name),
            routes,
            "docs/sandboxes.md, section {name}, against {file}"
        );
    }
}
