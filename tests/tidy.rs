//! Checks of the source tree that are cheap to enforce (as rust-analyzer's `xtask/src/tidy.rs`):
//! every `.rs` file opens with a `//!` comment saying what it is for, and the end-to-end tests
//! never sleep — they wait for a condition with the harness (`pollwatch_tests::eventually`) or
//! let chosen time pass through it (`pollwatch_tests::pause`).

use std::path::{Path, PathBuf};

/// Folders that hold no source of ours: build output, git's store, the fuzzers' generated inputs.
const SKIPPED: &[&str] = &["target", ".git", "fuzz/corpus", "fuzz/artifacts"];

#[test]
fn every_rust_file_opens_with_a_module_comment_and_end_to_end_tests_never_sleep() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(files.len() > 20, "found only {} .rs files under {}", files.len(), root.display());
    let mut problems = Vec::new();
    for path in &files {
        let text =
            std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if !text.lines().next().is_some_and(|first| first.starts_with("//!")) {
            problems.push(format!(
                "{}: does not open with a `//!` comment saying what it is for",
                path.display()
            ));
        }
        if path.starts_with("tests/e2e") && text.contains("sleep(") {
            problems.push(format!(
                "{}: calls sleep( — wait with pollwatch_tests::eventually, or pollwatch_tests::pause for chosen time",
                path.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// The `.rs` files under `dir`, as paths relative to `root`.
fn collect(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        let relative = path.strip_prefix(root).expect("under the root").to_owned();
        if SKIPPED.iter().any(|skipped| relative == Path::new(skipped)) {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(relative);
        }
    }
}
