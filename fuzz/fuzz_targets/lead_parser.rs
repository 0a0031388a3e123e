//! Fuzzes the parser of `POST /v1/leads` bodies, the one the endpoint uses, with
//! arbitrary bytes.
//!
//! A valid lead must satisfy the documented limits and redact with every invariant held.
//! An error must be a 4xx with a snake_case code and a message that quotes none of the
//! body's values.

#![no_main]

use leadgate::http::error::ApiError;
use leadgate::http::leads::{
    CHANNELS, MAX_CONTACT_BYTES, MAX_ID_BYTES, MAX_TEXT_BYTES, parse_lead,
};
use leadgate::pipeline::ValidLead;
use leadgate_fuzz::check_redaction;
use libfuzzer_sys::fuzz_target;

/// Body values at least this long must not appear in an error message. Shorter ones may
/// match a field name or a word of the message by chance.
const MIN_QUOTED_BYTES: usize = 24;

fuzz_target!(|body: &[u8]| {
    match parse_lead(body, 1) {
        Ok(lead) => check_lead(&lead),
        Err(error) => check_error(body, &error),
    }
});

fn check_lead(lead: &ValidLead) {
    assert!(CHANNELS.contains(&lead.channel.as_str()), "unknown channel");
    check_trimmed("external_id", &lead.external_id, MAX_ID_BYTES);
    check_trimmed("text", &lead.text, MAX_TEXT_BYTES);
    let contact = &lead.contact;
    for (name, value) in [
        ("name", &contact.name),
        ("phone", &contact.phone),
        ("email", &contact.email),
        ("handle", &contact.handle),
    ] {
        if let Some(value) = value {
            check_trimmed(name, value, MAX_CONTACT_BYTES);
        }
    }
    let (redaction, name_placeholder) = lead.redact();
    check_redaction(&lead.text, &redaction, true);
    assert_eq!(
        name_placeholder.is_some(),
        contact.name.is_some(),
        "a contact name must get a placeholder, and only a contact name"
    );
    if let Some(placeholder) = name_placeholder {
        assert!(
            redaction.mapping.get(&placeholder).is_some(),
            "the name placeholder {placeholder} has no mapping entry"
        );
    }
}

fn check_trimmed(field: &str, value: &str, max_bytes: usize) {
    assert!(!value.is_empty(), "`{field}` is empty");
    assert!(
        value.len() <= max_bytes,
        "`{field}` has {} bytes, over {max_bytes}",
        value.len()
    );
    assert_eq!(value.trim(), value, "`{field}` is not trimmed");
}

fn check_error(body: &[u8], error: &ApiError) {
    let status = error.status.as_u16();
    assert!(
        status == 400 || status == 422,
        "status {status} for a bad body"
    );
    assert!(
        !error.code.is_empty()
            && error
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'),
        "code {:?} is not snake_case",
        error.code
    );
    assert!(
        !error.message.is_empty(),
        "empty message for {}",
        error.code
    );
    assert!(
        error.message.is_ascii(),
        "the message for {} has non-ASCII text, which can only come from the body",
        error.code
    );
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut strings = Vec::new();
        collect_strings(&value, &mut strings);
        for string in strings {
            if string.len() < MIN_QUOTED_BYTES || !error.message.contains(string) {
                continue;
            }
            // The body may repeat our own wording, such as "`external_id` is requir". The
            // string came from the body only if the message for the same body with that
            // string replaced no longer contains it.
            let other = "x".repeat(string.len());
            let replaced = replace_strings(&value, string, &other).to_string();
            let again = parse_lead(replaced.as_bytes(), 1).err();
            assert!(
                again.is_some_and(|e| e.message.contains(string)),
                "the message for {} quotes a {} byte value of the body",
                error.code,
                string.len()
            );
        }
    }
}

/// Returns `value` with every string and object key equal to `from` replaced by `to`.
fn replace_strings(value: &serde_json::Value, from: &str, to: &str) -> serde_json::Value {
    use serde_json::Value;
    let swap = |s: &str| {
        if s == from {
            to.to_string()
        } else {
            s.to_string()
        }
    };
    match value {
        Value::String(s) => Value::String(swap(s)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| replace_strings(v, from, to)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (swap(k), replace_strings(v, from, to)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Collects every string in a JSON value, object keys included.
fn collect_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                out.push(key);
                collect_strings(v, out);
            }
        }
        _ => {}
    }
}
