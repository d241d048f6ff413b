//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same checks the
//! fuzz targets run (`exbind_server::fuzzing`), on the stable toolchain: a regression of any
//! input the fuzzer once found interesting fails here, without nightly.

use std::collections::BTreeSet;
use std::path::PathBuf;

use exbind_server::fuzzing;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{target}: only {} files", files.len());
    files
}

/// Runs `check` on every file of the target's corpus, naming the file that fails.
fn replay<R>(target: &str, check: impl Fn(&[u8]) -> R) -> Vec<R> {
    corpus(target)
        .iter()
        .map(|(name, data)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data)))
                .unwrap_or_else(|_| panic!("fuzz/corpus/{target}/{name} fails its check"))
        })
        .collect()
}

#[test]
fn binding_id_corpus() {
    replay("binding_id", fuzzing::binding_id);
}

#[test]
fn seed_corpus() {
    replay("seed", fuzzing::seed);
}

#[test]
fn token_corpus() {
    replay("token", fuzzing::token);
}

#[test]
fn query_corpus() {
    replay("query", fuzzing::query);
}

/// The corpus reaches the handlers, not only the 404s and token checks: a binding read, a
/// create and a delete, a token exchange and a user_info read, and the control plane's writes
/// succeed, console and authorize pages render, and the documented errors of every step of
/// the check pipeline are answered.
#[test]
fn http_corpus_reaches_the_handlers() {
    let answers: Vec<fuzzing::Answer> = replay("http", fuzzing::http).concat();
    let seen = |target: &str, method: &str, code: i64| {
        answers
            .iter()
            .any(|a| a.target == target && a.method == method && a.code == Some(code))
    };
    for (target, method) in [
        ("create", "POST"),
        ("binding", "GET"),
        ("binding", "DELETE"),
        ("oauth", "POST"),
        ("oauth", "GET"),
        ("token", "POST"),
        ("control", "GET"),
        ("control", "POST"),
        ("control", "PATCH"),
        ("control", "DELETE"),
    ] {
        assert!(seen(target, method, 0), "no success of {method} {target}");
    }
    let codes: BTreeSet<i64> = answers.iter().filter_map(|a| a.code).collect();
    for code in [
        190002, 190006, 190007, 195100, 195103, 195104, 99991201, 99991301, 99991661, 99991663,
        99991668, 99991671, 99991672, 99991677, 99991679, 10003,
    ] {
        assert!(
            codes.contains(&code),
            "the corpus never answers {code}: {codes:?}"
        );
    }
    assert!(
        answers
            .iter()
            .any(|a| a.target == "page" && a.status == 200),
        "no console page"
    );
    assert!(
        answers
            .iter()
            .any(|a| a.target == "authorize" && a.status == 200),
        "no authorize page"
    );
}
