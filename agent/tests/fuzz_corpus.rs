//! The fuzz corpora (`fuzz/corpus/<target>/`), replayed on stable: every input
//! a fuzzer kept (and every crash it found, added by hand) goes through the
//! same entry point as in `fuzz/` (`hark_agent::fuzz`), so CI checks them on
//! every run. `scripts/fuzz.sh` grows the corpora with cargo-fuzz.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use hark_agent::fuzz::TARGETS;

#[test]
fn every_fuzz_corpus_input_keeps_its_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut failures = vec![];
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target has a corpus)", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: an empty corpus", dir.display());
        for f in &files {
            let data = std::fs::read(f).unwrap();
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {why}", f.display()));
            }
        }
        eprintln!("fuzz corpus {name}: {} inputs", files.len());
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The corpus directories are the targets: a target without one, or a directory
/// no target reads, is a mistake.
#[test]
fn the_corpus_directories_are_the_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(dirs, names);
}
