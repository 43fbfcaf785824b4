//! The repository speaks of itself only: no file cites a document that is not in it. What
//! such documents once said is written in docs/ (bucketing.md, statistics.md, ...), and a
//! citation of one would send a reader to something they cannot open.

use std::fs;
use std::path::{Path, PathBuf};

/// Built from pieces so that this file does not cite them itself.
fn forbidden() -> Vec<String> {
    let md = ".md";
    vec![
        ["DESIGN", md].concat(),
        ["STATS", md].concat(),
        ["STYLE", md].concat(),
        ["shared", "/"].concat(),
    ]
}

/// Directories git does not track here (see .gitignore), or that are git's own.
fn skipped(name: &str) -> bool {
    matches!(name, ".git" | "target" | "data" | "node_modules")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the engine crate sits in the workspace")
        .to_path_buf()
}

/// Every file under `dir`, skipping the directories git ignores; symbolic links are not
/// followed.
fn files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
        let name = entry.file_name();
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type().expect("a file type");
        if kind.is_dir() {
            files(&entry.path(), found);
        } else if kind.is_file() {
            found.push(entry.path());
        }
    }
}

/// The forbidden strings `bytes` contains, with the 1-based line of each occurrence.
fn citations(bytes: &[u8], forbidden: &[String]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        for needle in forbidden {
            if line
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                found.push((index + 1, needle.clone()));
            }
        }
    }
    found
}

#[test]
fn the_search_finds_a_citation_and_ignores_the_words_alone() {
    let forbidden = forbidden();
    let text = format!(
        "design notes\nsee {} for the rules\nshared state\n",
        forbidden[1]
    );
    assert_eq!(
        citations(text.as_bytes(), &forbidden),
        vec![(2, forbidden[1].clone())]
    );
}

#[test]
fn no_file_cites_a_document_outside_the_repository() {
    let root = workspace_root();
    let forbidden = forbidden();
    let mut paths = Vec::new();
    files(&root, &mut paths);
    let relative = |path: &Path| {
        path.strip_prefix(&root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    };
    // So that a walk that went wrong cannot pass by finding nothing.
    let names: Vec<String> = paths.iter().map(|path| relative(path)).collect();
    for expected in [
        "engine/src/lib.rs",
        "docs/statistics.md",
        "spec/bucketing.json",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "the walk from {} missed {expected}",
            root.display()
        );
    }

    let mut problems = Vec::new();
    for (path, name) in paths.iter().zip(&names) {
        let bytes = fs::read(path).unwrap_or_else(|error| panic!("{name}: {error}"));
        for (line, needle) in citations(&bytes, &forbidden) {
            problems.push(format!("{name}:{line}: cites {needle}"));
        }
    }
    assert!(
        problems.is_empty(),
        "write the fact itself, or cite docs/ (bucketing.md, statistics.md, ...):\n{}",
        problems.join("\n")
    );
}
