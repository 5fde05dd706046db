//! ARCHITECTURE.md kept true to the tree: every file under `src/` is named
//! there, in a code span, by its path below `src/` (serve/http.rs for the
//! file src/serve/http.rs), and every `.rs` file it names in a code span
//! exists. Reads the tree and the markdown only.

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
