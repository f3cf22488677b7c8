//! Every committed fuzz input (`fuzz/corpus/TARGET/*`, and crash reproducers in
//! `fuzz/regressions/TARGET/*`) replayed through its target as an ordinary test on stable,
//! so CI needs no fuzzer and a fixed crash that comes back fails it.

use std::path::PathBuf;

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

fn files(dir: PathBuf) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_corpus_file_replays_cleanly() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, run) in targets::TARGETS {
        let corpus = files(root.join("corpus").join(target));
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} has no inputs");
        let regressions = files(root.join("regressions").join(target));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        }
    }
    let stray: Vec<PathBuf> = files(root.join("corpus"))
        .into_iter()
        .chain(files(root.join("regressions")))
        .collect();
    assert!(
        stray.is_empty(),
        "files where a target's directory belongs: {stray:?}"
    );
    for dir in std::fs::read_dir(root.join("corpus"))
        .expect("fuzz/corpus")
        .flatten()
    {
        let name = dir.file_name().into_string().expect("utf-8 name");
        assert!(
            targets::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} belongs to no target"
        );
    }
}
