//! The module graph keeps its shape: every `crate::…` path in `src/` points down the layers of
//! `src/lib.rs` (or to a peer of the same layer), and no modules use each other in a cycle. A
//! new top-level module must be given a layer here, so its place is a decision, not an accident.

#![allow(clippy::unwrap_used)] // an unreadable src/ fails the test, by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// Lowest first. A module may use its own layer's peers (without a cycle) and anything below.
const LAYERS: &[&[&str]] = &[
    // The values chatrun is about: imports nothing from the crate.
    &["domain"],
    // Pure parsing and wording, and the store (the only SQL).
    &["chat", "store", "catalog", "report", "render"],
    // The use cases and the processes. `config` builds every module's settings; it sits here
    // because the use cases, the workers and the pages still take the whole `Config`.
    &["service", "logs", "runner", "config"],
    &["worker", "outbox"],
    &["http"],
    &["app"],
    &["cli"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `text` names through `crate::`, comments and strings left out.
fn used(text: &str) -> BTreeSet<String> {
    let string = Regex::new(r#""(\\.|[^"\\])*""#).unwrap();
    let group = Regex::new(r"crate::\{([^;]*?)\}\s*;").unwrap();
    let path = Regex::new(r"crate::([a-z_][a-z0-9_]*)").unwrap();
    let first = Regex::new(r"(?:^|[{,])\s*([a-z_][a-z0-9_]*)").unwrap();
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| string.replace_all(line, "\"\"").into_owned() + "\n")
        .collect();
    let mut out: BTreeSet<String> = path
        .captures_iter(&code)
        .map(|c| c[1].to_string())
        .collect();
    for g in group.captures_iter(&code) {
        // `crate::{a, b::{c, d}}`: the first name of each top-level item.
        let mut depth = 0;
        let mut top = String::new();
        for ch in g[1].chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ if depth == 0 => top.push(ch),
                _ => {}
            }
        }
        out.extend(first.captures_iter(&top).map(|c| c[1].to_string()));
    }
    out
}

/// module -> (module it uses -> a file that does).
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let tops: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let entry = edges.entry(module.clone()).or_default();
        for target in used(&std::fs::read_to_string(&file).unwrap()) {
            if target != module && tops.contains(&target) {
                entry
                    .entry(target)
                    .or_insert_with(|| rel.display().to_string());
            }
        }
    }
    edges
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = graph().into_keys().filter(|m| rank(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "give these modules a layer in tests/architecture.rs and src/lib.rs: {unplaced:?}"
    );
}

#[test]
fn no_module_uses_a_module_of_a_higher_layer() {
    let mut upward = Vec::new();
    for (from, targets) in graph() {
        for (to, file) in targets {
            if let (Some(a), Some(b)) = (rank(&from), rank(&to))
                && b > a
            {
                upward.push(format!("{from} -> {to} (in src/{file})"));
            }
        }
    }
    assert!(upward.is_empty(), "arrows pointing up: {upward:#?}");
}

#[test]
fn the_domain_uses_nothing_else_of_the_crate() {
    let graph = graph();
    let used: Vec<&String> = graph["domain"].keys().collect();
    assert!(used.is_empty(), "domain uses {used:?}");
}

#[test]
fn no_modules_use_each_other_in_a_cycle() {
    let graph = graph();
    // From each module, follow its arrows: reaching itself again is a cycle.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flat_map(|t| t.keys()) {
                if next == start {
                    panic!("cycle: {} -> {start}", path.join(" -> "));
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
}

#[test]
fn the_check_sees_a_grouped_import_and_ignores_comments_and_strings() {
    let text = "use crate::{domain::RunId, store::{self, Store}};\n// crate::http\nlet s = \"crate::cli\";\nlet x = crate::worker::Turn::Idle;";
    let found: Vec<String> = used(text).into_iter().collect();
    assert_eq!(found, ["domain", "store", "worker"]);
}
