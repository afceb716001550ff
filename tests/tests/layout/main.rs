//! The project's own structure check: no import cycle between the modules of one crate.
//!
//! Within a crate, every file is a module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`).
//! A reference from file `f` to module `t` (through `crate::…`, `super::…` or `self::…`)
//! is an edge between the two children of their nearest common module that hold `f` and
//! `t`; references between a module and its own descendants (a parent declaring a child,
//! a child using its parent's items) are the normal shape of Rust and count for nothing.
//! A cycle among the children of any module fails the test, naming every module on it.
//!
//! Run alone with `cargo test -p syncledger-tests --test layout`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules are checked: every crate of the workspace with a `src/`.
const CRATES: &[&str] = &[
    "domain",
    "adapters/store",
    "adapters/vault",
    "adapters/bus",
    "adapters/crm",
    "adapters/sandbox",
    "projections",
    "engine",
    "api",
    "testkit",
];

type Module = Vec<String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            // A test module may reach anywhere; it is not one of the crate's imports.
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `[a, b]`; `src/lib.rs` and `src/main.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if !matches!(stem, "mod" | "lib" | "main") {
            parts.push(stem.to_owned());
        }
    }
    parts
}

/// The text without comments, string and character literals (they may hold paths that
/// are not references).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every path in `code` that starts with `crate`, `super` or `self`, as its segments,
/// with `{a, b}` groups expanded to their first segment each.
fn paths(code: &str) -> Vec<Vec<String>> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':');
        if !starts_word || !is_ident(chars[i]) {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < chars.len() && is_ident(chars[j]) {
                j += 1;
            }
            segments.push(chars[start..j].iter().collect::<String>());
            let mut k = j;
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            if chars.get(k) == Some(&':') && chars.get(k + 1) == Some(&':') {
                k += 2;
                while k < chars.len() && chars[k].is_whitespace() {
                    k += 1;
                }
                if chars.get(k) == Some(&'{') {
                    // A group: each member is a path continuing this one.
                    let mut depth = 0;
                    let mut member = String::new();
                    let mut members = Vec::new();
                    for &c in &chars[k..] {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            ',' if depth == 1 => members.push(std::mem::take(&mut member)),
                            _ if depth == 1 => member.push(c),
                            _ => {}
                        }
                    }
                    members.push(member);
                    for m in members {
                        let first: String = m.trim().chars().take_while(|c| is_ident(*c)).collect();
                        if !first.is_empty() {
                            let mut p = segments.clone();
                            p.push(first);
                            found.push(p);
                        }
                    }
                    segments.clear();
                    break;
                }
                if k < chars.len() && is_ident(chars[k]) {
                    j = k;
                    continue;
                }
            }
            break;
        }
        if matches!(
            segments.first().map(String::as_str),
            Some("crate" | "super" | "self")
        ) {
            found.push(segments);
        }
        i = j.max(i + 1);
    }
    found
}

/// The module a path names: the longest prefix that is a module of the crate.
fn target(from: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    // `self` and `super` are relative to the file's module (a `mod.rs` is its folder's).
    let mut base: Module = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        _ => from.clone(),
    };
    let mut rest = &path[1..];
    if path.first().map(String::as_str) == Some("super") {
        base.pop();
        while rest.first().map(String::as_str) == Some("super") {
            base.pop();
            rest = &rest[1..];
        }
    }
    let mut best = None;
    let mut m = base.clone();
    if modules.contains(&m) {
        best = Some(m.clone());
    }
    for seg in rest {
        m.push(seg.clone());
        if modules.contains(&m) {
            best = Some(m.clone());
        } else {
            break;
        }
    }
    best
}

/// Cycles in each module's graph of children, as lists of module paths.
fn cycles_in(krate: &str) -> Vec<String> {
    let src = root().join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    // parent module → child → children it references
    let mut graphs: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // Tests inside a file may reach anywhere; they are not the module's imports.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for path in paths(&code_only(text)) {
            let Some(to) = target(&from, &path, &modules) else {
                continue;
            };
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // the same module, or one holds the other
            }
            graphs
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .insert(to[common].clone());
        }
    }
    let mut found = Vec::new();
    for (parent, graph) in &graphs {
        for cycle in strongly_connected(graph) {
            let named: Vec<String> = cycle
                .iter()
                .map(|c| {
                    let mut p = parent.clone();
                    p.push(c.clone());
                    p.join("::")
                })
                .collect();
            found.push(format!("{krate}: {}", named.join(" ↔ ")));
        }
    }
    found
}

/// The strongly connected components of more than one node (Tarjan's algorithm).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(next) = s.graph.get(v) {
            for w in next {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_module_imports_another_in_a_circle() {
    let mut cycles = Vec::new();
    for krate in CRATES {
        assert!(
            root().join(krate).join("src").is_dir(),
            "{krate}/src is missing: update CRATES"
        );
        cycles.extend(cycles_in(krate));
    }
    assert!(
        cycles.is_empty(),
        "import cycles between modules:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_check_sees_a_cycle_and_its_absence() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(strongly_connected(&graph), vec![vec!["a", "b", "c"]]);
    graph.insert("c".to_owned(), BTreeSet::new());
    assert!(strongly_connected(&graph).is_empty());
}

#[test]
fn paths_are_read_from_uses_groups_and_expressions() {
    let code = code_only(
        "use crate::routes::{integrations::owned, as_of};\n\
         // use crate::commented::out;\n\
         let x = super::super::state::AppState::new(\"crate::in_a_string\");\n\
         use self::inner::Thing;",
    );
    let found = paths(&code);
    assert!(found.contains(&vec![
        "crate".into(),
        "routes".into(),
        "integrations".into()
    ]));
    assert!(found.contains(&vec!["crate".into(), "routes".into(), "as_of".into()]));
    assert!(found.contains(&vec![
        "super".into(),
        "super".into(),
        "state".into(),
        "AppState".into(),
        "new".into()
    ]));
    assert!(found.contains(&vec!["self".into(), "inner".into(), "Thing".into()]));
    assert!(!found.iter().any(|p| p.contains(&"commented".to_owned())));
    assert!(!found.iter().any(|p| p.contains(&"in_a_string".to_owned())));
}
