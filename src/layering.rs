//! The one-way rule, checked: no module under `src/` imports a module that
//! imports it back. Reads every file's `use` lines (a `mod` line is not an
//! import) and resolves each path to the module file it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module's path below the crate root: `["probe", "cache"]`.
type ModulePath = Vec<String>;

/// Every module file under `src/` (the binary's `main.rs` aside) and its text.
fn modules(dir: &Path, path: &[String], into: &mut BTreeMap<ModulePath, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        if file.is_dir() {
            modules(&file, &[path, &[name]].concat(), into);
        } else if file.extension().is_some_and(|ext| ext == "rs") && name != "main" {
            let module = match name.as_str() {
                "lib" | "mod" => path.to_vec(),
                _ => [path, &[name]].concat(),
            };
            into.insert(module, std::fs::read_to_string(&file).unwrap());
        }
    }
}

/// Each path a `use` tree names, braces expanded: `a::{b, c::d}` gives
/// `a::b` and `a::c::d`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_owned()];
    };
    let (prefix, inner) = (&tree[..open], &tree[open + 1..tree.rfind('}').unwrap()]);
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(expand)
        .map(|item| format!("{prefix}{item}"))
        .collect()
}

/// The modules `module`'s text imports (itself and external crates aside).
/// A `use` indented (inside an inline `mod tests`) counts as the file's.
fn imports(module: &ModulePath, text: &str, known: &BTreeSet<&ModulePath>) -> BTreeSet<ModulePath> {
    let mut found = BTreeSet::new();
    let mut statement: Option<(bool, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut statement {
            Some((_, text)) => text.push_str(trimmed),
            None => {
                let visible = ["pub(crate) ", "pub(super) ", "pub "]
                    .iter()
                    .find_map(|word| trimmed.strip_prefix(word))
                    .unwrap_or(trimmed);
                let Some(tree) = visible.strip_prefix("use ") else {
                    continue;
                };
                statement = Some((line.len() != trimmed.len(), tree.to_owned()));
            }
        }
        let Some((inline, text)) = &statement else {
            continue;
        };
        let Some(end) = text.find(';') else { continue };
        let (inline, paths) = (*inline, expand(&text[..end]));
        statement = None;
        for path in paths {
            let mut words = path.split("::").map(str::trim);
            // Where the path starts: an inline module's `super` is the file.
            let mut resolved: ModulePath = match words.next().unwrap() {
                "crate" => Vec::new(),
                "self" => module.clone(),
                "super" if inline => module.clone(),
                "super" => module[..module.len().saturating_sub(1)].to_vec(),
                child => [module.clone(), vec![child.to_owned()]].concat(),
            };
            for word in words {
                match word {
                    "super" => {
                        resolved.pop();
                    }
                    _ => resolved.push(word.to_owned()),
                }
            }
            // The longest prefix that is a module file.
            while !resolved.is_empty() && !known.contains(&resolved) {
                resolved.pop();
            }
            if resolved != *module && (!resolved.is_empty() || path.starts_with("crate")) {
                found.insert(resolved);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut files = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut files,
    );
    let known: BTreeSet<&ModulePath> = files.keys().collect();
    let graph: BTreeMap<&ModulePath, BTreeSet<ModulePath>> = files
        .iter()
        .map(|(module, text)| (module, imports(module, text, &known)))
        .collect();
    let name = |module: &ModulePath| format!("crate::{}", module.join("::"));
    let mut circles = Vec::new();
    for (&from, targets) in &graph {
        for to in targets.iter().filter(|to| from < *to) {
            if graph.get(to).is_some_and(|back| back.contains(from)) {
                circles.push(format!("{} <-> {}", name(from), name(to)));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn a_use_tree_names_each_path() {
    assert_eq!(
        expand("super::{a::{B, C as D}, e}"),
        ["super::a::B", "super::a::C", "super::e"]
    );
}
