//! Measures single-thread redaction throughput in MB/s over the `text` fields of a JSON Lines
//! file, repeated until about 20 MB have been processed.
//!
//! Usage: `cargo run --release --example bench -- PATH/leads-dev.jsonl`
//!
//! Repeated texts hit the phone validation cache, so new phone numbers in real traffic cost
//! more (about 40 µs each in `phonenumber::is_valid`).

use leadgate::redact::redact;
use std::process::ExitCode;
use std::time::Instant;

const TARGET_BYTES: usize = 20_000_000;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: bench PATH.jsonl (one JSON object with a `text` field per line)");
        return ExitCode::FAILURE;
    };
    let input = match std::fs::read_to_string(&path) {
        Ok(input) => input,
        Err(error) => {
            eprintln!("failed to read {path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let texts: Vec<String> = input
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|value| value.get("text")?.as_str().map(str::to_string))
        .collect();
    let corpus_bytes: usize = texts.iter().map(String::len).sum();
    if corpus_bytes == 0 {
        eprintln!("no `text` fields found in {path}");
        return ExitCode::FAILURE;
    }

    // Warm-up builds the lazily compiled regexes and dictionaries outside the timing.
    let mut spans = 0usize;
    for text in &texts {
        spans += redact(text).spans.len();
    }

    let rounds = TARGET_BYTES.div_ceil(corpus_bytes);
    let started = Instant::now();
    for _ in 0..rounds {
        for text in &texts {
            spans += redact(text).spans.len();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let megabytes = (corpus_bytes * rounds) as f64 / 1e6;
    println!(
        "{} messages x {rounds} rounds, {megabytes:.1} MB in {seconds:.2} s: {:.1} MB/s ({spans} spans)",
        texts.len(),
        megabytes / seconds
    );
    ExitCode::SUCCESS
}
