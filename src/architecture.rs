//! The docs kept true to the tree: every file under `src/` is named in
//! ARCHITECTURE.md, in a code span, by its path below `src/` (serve/http.rs
//! for the file src/serve/http.rs), and every `.rs` file it names in a code
//! span exists; every test TESTING.md's fault matrix names is in the file
//! it names. Reads the tree and the markdown only.

use std::collections::BTreeSet;
use std::path::Path;

/// Every `.rs` file under `dir`, as its path below `src/` with `/`.
fn sources(dir: &Path, prefix: &str, into: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if file.is_dir() {
            sources(&file, &format!("{prefix}{name}/"), into);
        } else if name.ends_with(".rs") {
            into.insert(format!("{prefix}{name}"));
        }
    }
}

/// The code spans of a markdown text that name a Rust file: `` `a/b.rs` ``.
/// Fenced blocks are left out (their backticks are not spans).
fn named_files(markdown: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| {
            let file = span.rsplit('/').next().unwrap_or(span);
            file.len() > ".rs".len()
                && file.ends_with(".rs")
                && span
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.'))
        })
        .map(|span| span.strip_prefix("src/").unwrap_or(span).to_owned())
        .collect()
}

/// The tree's files the text never names by their whole path below `src/`,
/// and the files it names that the tree does not hold: a short name
/// (`client.rs`) counts when it is the tail of a file's path; paths under
/// `tests/` and `benches/` are not the tree's.
fn mismatches(tree: &BTreeSet<String>, markdown: &str) -> (Vec<String>, Vec<String>) {
    let named = named_files(markdown);
    let unnamed = tree
        .iter()
        .filter(|file| !named.contains(file))
        .cloned()
        .collect();
    let mut missing: Vec<String> = named
        .into_iter()
        .filter(|name| !name.starts_with("tests/") && !name.starts_with("benches/"))
        .filter(|name| {
            !tree
                .iter()
                .any(|file| file == name || file.ends_with(&format!("/{name}")))
        })
        .collect();
    missing.sort();
    missing.dedup();
    (unnamed, missing)
}

#[test]
fn architecture_names_every_source_file_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut tree = BTreeSet::new();
    sources(&root.join("src"), "", &mut tree);
    let markdown = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let (unnamed, missing) = mismatches(&tree, &markdown);
    assert!(
        unnamed.is_empty(),
        "ARCHITECTURE.md does not name these files under src/ (write each as `path/below/src.rs` with its role): {unnamed:?}"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names files that are not under src/: {missing:?}"
    );
}

#[test]
fn a_file_counts_by_its_whole_path_and_a_named_file_must_exist() {
    let tree: BTreeSet<String> = ["main.rs", "serve/http.rs", "virsh/session/mod.rs"]
        .map(String::from)
        .into();
    let text = "`main.rs` parses; `serve/http.rs` answers.\n\
                `session/mod.rs` and `src/gone.rs` and `tests/cli/main.rs`\n\
                ```text\n`virsh/session/mod.rs` in a fence\n```\n\
                `http.rs` alone, `a b.rs` is no path, nor `.rs`.\n";
    let (unnamed, missing) = mismatches(&tree, text);
    // `session/mod.rs` and a fenced span do not name the whole path.
    assert_eq!(unnamed, ["virsh/session/mod.rs"]);
    assert_eq!(missing, ["gone.rs"]);
}

/// The tests a fault matrix row names that its file does not hold: a row
/// names them as `` `path.rs` `test_name`, `other_test` ``; a name counts
/// where the file defines it (`fn name(`).
fn unknown_tests(row: &str, read: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let spans: Vec<&str> = row.split('`').collect();
    let mut unknown = Vec::new();
    let mut file: Option<(String, Option<String>)> = None;
    for (at, span) in spans.iter().enumerate() {
        if at % 2 == 0 {
            // Text between spans: a list goes on over commas alone.
            if !span.trim().trim_matches(',').trim().is_empty() {
                file = None;
            }
            continue;
        }
        if (span.starts_with("src/") || span.starts_with("tests/")) && span.ends_with(".rs") {
            file = Some((span.to_string(), read(span)));
        } else if let Some((path, text)) = &file {
            let is_name = !span.is_empty()
                && span
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !is_name {
                file = None;
                continue;
            }
            let defined = text
                .as_deref()
                .is_some_and(|text| text.contains(&format!("fn {span}(")));
            if !defined {
                unknown.push(format!("{path} {span}"));
            }
        }
    }
    unknown
}

#[test]
fn the_fault_matrix_names_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let testing = std::fs::read_to_string(root.join("TESTING.md")).unwrap();
    let unknown: Vec<String> = testing
        .lines()
        .filter(|line| line.starts_with('|'))
        .flat_map(|row| unknown_tests(row, |path| std::fs::read_to_string(root.join(path)).ok()))
        .collect();
    assert!(
        unknown.is_empty(),
        "TESTING.md names tests its files do not hold (moved or renamed?): {unknown:#?}"
    );
}

#[test]
fn a_row_names_tests_after_their_file_until_other_text() {
    let file = "fn first() {}\nfn second() {}\n";
    let read = |path: &str| (path == "tests/a.rs").then(|| file.to_owned());
    let row = "| fault | `tests/a.rs` `first`, `second`; `tests/gone.rs` `third` | `first_word` |";
    assert_eq!(unknown_tests(row, read), ["tests/gone.rs third"]);
    let row = "| `tests/a.rs` `first`, `missing` and `not_a_test` |";
    assert_eq!(unknown_tests(row, read), ["tests/a.rs missing"]);
}
