//! Every seed of every fuzz target, run through the same entry point under plain
//! `cargo test`: none may panic or overflow a stack (either would fail this test binary).

use sichat_fuzz_harness::TARGETS;
use std::path::Path;

#[test]
fn every_seed_of_every_target_runs_to_completion() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, run) in TARGETS {
        let dir = corpus.join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 2, "{target}: a seed corpus of a few real inputs");
        for seed in seeds {
            let data = std::fs::read(&seed).expect("seed");
            run(&data);
        }
    }
}
