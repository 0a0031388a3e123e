//! Fuzzes the redactor with arbitrary UTF-8. It must not panic, `restore` must give back
//! the input, and every placeholder must be well formed.

#![no_main]

use leadgate::redact::redact;
use leadgate_fuzz::check_redaction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let redaction = redact(text);
    check_redaction(text, &redaction, false);
});
