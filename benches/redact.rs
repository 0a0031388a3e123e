//! Measures single-thread redaction throughput in MB/s over the `text` fields of a JSON Lines
//! file, repeated until about 20 MB have been processed.
//!
//! Usage: `cargo bench --bench redact -- PATH/leads-dev.jsonl [--fresh-phones]`
//!
//! Repeated texts hit the phone validation cache, so new phone numbers in real traffic cost
//! more. `--fresh-phones` rewrites the digits of every phone-like number in every round, so
//! each round validates numbers the cache has not seen.

use leadgate::redact::redact;
use std::process::ExitCode;
use std::time::Instant;

const TARGET_BYTES: usize = 20_000_000;

/// Digits in the shortest and longest digit runs that `--fresh-phones` rewrites.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 7..=15;

/// Leading digits kept by `--fresh-phones` (country or trunk prefix and operator code), so
/// rewritten Russian numbers mostly stay valid.
const KEPT_DIGITS: usize = 4;

fn main() -> ExitCode {
    let mut path = None;
    let mut fresh_phones = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--fresh-phones" => fresh_phones = true,
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            _ if path.is_none() => path = Some(arg),
            _ => {
                eprintln!("unexpected argument {arg:?}");
                return usage();
            }
        }
    }
    let Some(path) = path else {
        return usage();
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
    // Rewritten texts are prepared before the timing, so only redaction is measured.
    let fresh_rounds: Vec<Vec<String>> = if fresh_phones {
        (0..rounds)
            .map(|round| {
                texts
                    .iter()
                    .enumerate()
                    .map(|(index, text)| rewrite_phones(text, (round * texts.len() + index) as u64))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    let started = Instant::now();
    for round in 0..rounds {
        let round_texts = fresh_rounds.get(round).unwrap_or(&texts);
        for text in round_texts {
            spans += redact(text).spans.len();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let megabytes = (corpus_bytes * rounds) as f64 / 1e6;
    let mode = if fresh_phones { ", fresh phones" } else { "" };
    println!(
        "{} messages x {rounds} rounds{mode}, {megabytes:.1} MB in {seconds:.2} s: {:.1} MB/s ({spans} spans)",
        texts.len(),
        megabytes / seconds
    );
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench PATH.jsonl [--fresh-phones] (one JSON object with a `text` field per line)"
    );
    ExitCode::FAILURE
}

/// Replaces the digits after the first [`KEPT_DIGITS`] of every phone-like number in `text`
/// (ASCII digits joined by spaces, dashes, dots or brackets, with a digit count in
/// [`PHONE_DIGITS`]) by digits derived from `seed`. The byte length stays the same.
fn rewrite_phones(text: &str, seed: u64) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        // Extend over digits and separators, ending on the last digit.
        let mut end = at + 1;
        let mut scan = end;
        while scan < bytes.len()
            && (bytes[scan].is_ascii_digit() || b" -.()".contains(&bytes[scan]))
        {
            scan += 1;
            if bytes[scan - 1].is_ascii_digit() {
                end = scan;
            }
        }
        let digit_positions: Vec<usize> =
            (at..end).filter(|&i| bytes[i].is_ascii_digit()).collect();
        if PHONE_DIGITS.contains(&digit_positions.len()) {
            for &i in &digit_positions[KEPT_DIGITS..] {
                // xorshift64 step: a cheap deterministic digit source.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes[i] = b'0' + (state % 10) as u8;
            }
        }
        at = end;
    }
    // Only ASCII digits were replaced by ASCII digits, so the bytes are still UTF-8.
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_string())
}
