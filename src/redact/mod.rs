//! Personal-data redaction for incoming chat messages (Russian, English, transliterated).
//!
//! [`redact`] replaces personal data with typed placeholders such as `[PHONE_1]` before a
//! message reaches the LLM, and flags health data (special category under 152-FZ art. 10)
//! without redacting it. [`restore`] and [`restore_draft`] put the original values back.
//!
//! Placeholder collisions: a placeholder is never issued if the same text already occurs in
//! the input, so `[PHONE_1]` typed by a client stays literal and the first detected phone
//! becomes `[PHONE_2]`. Restoration then replaces only placeholders listed in the mapping,
//! which makes `restore(redact(x)) == x` hold for every string (see the round-trip proptest).

mod address;
mod birthdate;
mod contact;
pub mod eval;
mod health;
mod lookalike;
mod names;
mod numbers;
mod numwords;
mod person;
mod phone;
mod plate;
mod reverse;
mod text;

use serde::{Deserialize, Serialize};

pub use eval::{EvalReport, evaluate};
pub use reverse::replace_known;

/// Type of a detected personal-data item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PiiKind {
    Phone,
    Email,
    Card,
    Snils,
    Inn,
    Passport,
    Oms,
    Birthdate,
    Address,
    CarPlate,
    Handle,
    Person,
}

impl PiiKind {
    pub const ALL: [PiiKind; 12] = [
        PiiKind::Phone,
        PiiKind::Email,
        PiiKind::Card,
        PiiKind::Snils,
        PiiKind::Inn,
        PiiKind::Passport,
        PiiKind::Oms,
        PiiKind::Birthdate,
        PiiKind::Address,
        PiiKind::CarPlate,
        PiiKind::Handle,
        PiiKind::Person,
    ];

    /// Returns the serde name, which is also the placeholder prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Phone => "PHONE",
            PiiKind::Email => "EMAIL",
            PiiKind::Card => "CARD",
            PiiKind::Snils => "SNILS",
            PiiKind::Inn => "INN",
            PiiKind::Passport => "PASSPORT",
            PiiKind::Oms => "OMS",
            PiiKind::Birthdate => "BIRTHDATE",
            PiiKind::Address => "ADDRESS",
            PiiKind::CarPlate => "CAR_PLATE",
            PiiKind::Handle => "HANDLE",
            PiiKind::Person => "PERSON",
        }
    }

    /// Parses a kind name; `TELEGRAM_HANDLE` (the corpus label) is read as [`PiiKind::Handle`].
    pub fn parse(name: &str) -> Option<PiiKind> {
        if name == "TELEGRAM_HANDLE" {
            return Some(PiiKind::Handle);
        }
        PiiKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One redacted item. `start..end` are byte offsets into the original text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
    pub placeholder: String,
    /// E.164 for phones, lowercase for e-mails and handles, digits for document numbers.
    pub normalized: Option<String>,
}

/// One placeholder and the original text it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingEntry {
    pub placeholder: String,
    pub kind: PiiKind,
    /// Original text of the first occurrence; used for drafts and extra occurrences.
    pub value: String,
    /// Original text of every occurrence in order, because one value may be written in
    /// several ways ("+7 917 …" and "8917…" share a placeholder).
    pub occurrences: Vec<String>,
}

/// Placeholder-to-original table of one redaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub entries: Vec<MappingEntry>,
}

impl Mapping {
    /// Returns the entry for a placeholder such as `[PHONE_1]`.
    pub fn get(&self, placeholder: &str) -> Option<&MappingEntry> {
        self.entries.iter().find(|e| e.placeholder == placeholder)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A health word found in the message. Health data is flagged, not redacted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthHit {
    pub start: usize,
    pub end: usize,
    /// One of `symptom`, `diagnosis`, `pregnancy`, `medication`, `allergy`.
    pub category: &'static str,
}

/// Result of [`redact`].
#[derive(Debug, Clone, Serialize)]
pub struct Redaction {
    pub text: String,
    pub spans: Vec<Span>,
    pub mapping: Mapping,
    pub special_category: bool,
    pub health_terms: Vec<HealthHit>,
}

impl Redaction {
    /// Puts original values back into a text with placeholders; see [`restore`].
    pub fn restore(&self, text_with_placeholders: &str) -> String {
        restore(&self.mapping, text_with_placeholders)
    }
}

/// A detector result before placeholders are assigned.
#[derive(Debug, Clone)]
pub(crate) struct Detection {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
    pub normalized: Option<String>,
}

impl Detection {
    pub fn new(kind: PiiKind, start: usize, end: usize, confidence: f32) -> Self {
        Detection {
            kind,
            start,
            end,
            confidence,
            normalized: None,
        }
    }

    pub fn with_normalized(mut self, normalized: String) -> Self {
        self.normalized = Some(normalized);
        self
    }

    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// Detects personal data in `text` and replaces it with placeholders.
///
/// It must not panic on any `&str`; proptests over arbitrary and name-like strings check this.
pub fn redact(text: &str) -> Redaction {
    redact_with(text, Vec::new())
}

/// Returns the E.164 form of a phone number given on its own (such as a contact field), or
/// `None` when the `phonenumber` crate finds it invalid. Russian numbers may omit the +7 or
/// start with 8.
pub fn normalize_phone(value: &str) -> Option<String> {
    phone::normalize(value)
}

/// A value the caller already knows to be personal data, such as a contact field of a lead.
#[derive(Clone)]
pub struct KnownValue {
    pub kind: PiiKind,
    pub value: String,
}

impl std::fmt::Debug for KnownValue {
    // The value is personal data, so Debug shows only its kind and size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownValue")
            .field("kind", &self.kind)
            .field("bytes", &self.value.len())
            .finish()
    }
}

/// Like [`redact`], and also replaces every occurrence of the `known` values (case is
/// ignored; an occurrence must not be part of a longer word).
///
/// Every non-empty known value gets a mapping entry, even when the text does not contain
/// it, so a draft can address the client by placeholder. Returns the placeholder of each
/// known value in order, `None` for a blank value.
pub fn redact_with_known(text: &str, known: &[KnownValue]) -> (Redaction, Vec<Option<String>>) {
    let mut extra = Vec::new();
    let keys: Vec<Option<String>> = known.iter().map(known_key).collect();
    for (value, key) in known.iter().zip(&keys) {
        if key.is_some() {
            find_known(text, value, &mut extra);
        }
    }
    let mut redaction = redact_with(text, extra);
    let mut placeholders = Vec::with_capacity(known.len());
    for (value, key) in known.iter().zip(keys) {
        let Some(key) = key else {
            placeholders.push(None);
            continue;
        };
        let existing = redaction.spans.iter().find(|span| {
            span.kind == value.kind
                && (span.normalized.as_deref() == Some(key.as_str())
                    || text::fold(&text[span.start..span.end]) == key)
        });
        let placeholder = match existing {
            Some(span) => span.placeholder.clone(),
            None => add_unseen(&mut redaction, text, value),
        };
        placeholders.push(Some(placeholder));
    }
    (redaction, placeholders)
}

/// Returns the key under which a known value shares a placeholder with detections of the same value.
fn known_key(known: &KnownValue) -> Option<String> {
    let value = known.value.trim();
    if value.is_empty() {
        return None;
    }
    Some(match known.kind {
        PiiKind::Phone => phone::normalize(value).unwrap_or_else(|| text::fold(value)),
        PiiKind::Email | PiiKind::Handle => value.to_lowercase(),
        _ => text::fold(value),
    })
}

fn find_known(text: &str, known: &KnownValue, out: &mut Vec<Detection>) {
    let value = known.value.trim();
    let Ok(pattern) = regex::RegexBuilder::new(&regex::escape(value))
        .case_insensitive(true)
        .build()
    else {
        return;
    };
    let normalized = known_key(known).filter(|_| known.kind != PiiKind::Person);
    for m in pattern.find_iter(text) {
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if before.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric) {
            continue;
        }
        let mut detection = Detection::new(known.kind, m.start(), m.end(), 1.0);
        detection.normalized = normalized.clone();
        out.push(detection);
    }
}

/// Adds a mapping entry for a known value the text does not contain.
fn add_unseen(redaction: &mut Redaction, text: &str, known: &KnownValue) -> String {
    let mut number = 1;
    let placeholder = loop {
        let candidate = format!("[{}_{}]", known.kind.as_str(), number);
        number += 1;
        if redaction.mapping.get(&candidate).is_none() && !text.contains(&candidate) {
            break candidate;
        }
    };
    redaction.mapping.entries.push(MappingEntry {
        placeholder: placeholder.clone(),
        kind: known.kind,
        value: known.value.trim().to_string(),
        occurrences: Vec::new(),
    });
    placeholder
}

fn redact_with(original: &str, extra: Vec<Detection>) -> Redaction {
    // The detectors run on the folded text; their spans are mapped back to the original.
    let folded = lookalike::fold(original);
    let text: &str = &folded.text;
    let mut fold_buffer = String::new();
    let tokens = text::tokenize(text, &mut fold_buffer);
    let mut found = Vec::new();
    // Digit-based regexes are skipped for texts without digits, which saves a full scan each.
    let has_digits = tokens.iter().any(|t| t.kind == text::TokenKind::Number);
    phone::detect(text, &tokens, has_digits, &mut found);
    if has_digits {
        numbers::detect(text, &tokens, &mut found);
        birthdate::detect(text, &mut found);
    }
    contact::detect(text, &mut found);
    address::detect(text, &tokens, &mut found);
    plate::detect(text, &tokens, &mut found);
    person::detect(text, &tokens, &mut found);
    found.retain(|d| d.start < d.end && d.end <= text.len());
    for detection in &mut found {
        detection.start = folded.original(detection.start);
        detection.end = folded.original(detection.end);
    }
    found.extend(extra);
    let text = original;

    let spans = assign_placeholders(text, resolve_overlaps(found));
    let (redacted, mapping) = apply(text, &spans);
    let mut health_terms = health::detect(&tokens);
    for term in &mut health_terms {
        term.start = folded.original(term.start);
        term.end = folded.original(term.end);
    }
    Redaction {
        text: redacted,
        spans,
        mapping,
        special_category: !health_terms.is_empty(),
        health_terms,
    }
}

/// Keeps one detection per overlapping group: the longer, then the more confident.
fn resolve_overlaps(mut found: Vec<Detection>) -> Vec<Detection> {
    found.sort_by(|a, b| {
        b.len()
            .cmp(&a.len())
            .then(b.confidence.total_cmp(&a.confidence))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Detection> = Vec::with_capacity(found.len());
    for d in found {
        if kept.iter().all(|k| d.end <= k.start || d.start >= k.end) {
            kept.push(d);
        }
    }
    kept.sort_by_key(|d| d.start);
    kept
}

fn assign_placeholders(text: &str, found: Vec<Detection>) -> Vec<Span> {
    // Key: kind + normalized value (or folded original) -> placeholder.
    let mut issued: Vec<(PiiKind, String, String)> = Vec::new();
    let mut next_number = [1usize; PiiKind::ALL.len()];
    let mut spans = Vec::with_capacity(found.len());
    for d in found {
        let original = &text[d.start..d.end];
        let key = d.normalized.clone().unwrap_or_else(|| text::fold(original));
        let existing = issued
            .iter()
            .find(|(kind, k, _)| *kind == d.kind && *k == key)
            .map(|(_, _, p)| p.clone());
        let placeholder = match existing {
            Some(p) => p,
            None => {
                let slot = &mut next_number[d.kind as usize];
                let placeholder = loop {
                    let candidate = format!("[{}_{}]", d.kind.as_str(), *slot);
                    *slot += 1;
                    // Skip numbers whose placeholder text already occurs in the input.
                    if !text.contains(&candidate) {
                        break candidate;
                    }
                };
                issued.push((d.kind, key, placeholder.clone()));
                placeholder
            }
        };
        spans.push(Span {
            kind: d.kind,
            start: d.start,
            end: d.end,
            confidence: d.confidence,
            placeholder,
            normalized: d.normalized,
        });
    }
    spans
}

fn apply(text: &str, spans: &[Span]) -> (String, Mapping) {
    let mut out = String::with_capacity(text.len());
    let mut mapping = Mapping::default();
    let mut pos = 0;
    for span in spans {
        out.push_str(&text[pos..span.start]);
        out.push_str(&span.placeholder);
        let original = text[span.start..span.end].to_string();
        match mapping
            .entries
            .iter_mut()
            .find(|e| e.placeholder == span.placeholder)
        {
            Some(entry) => entry.occurrences.push(original),
            None => mapping.entries.push(MappingEntry {
                placeholder: span.placeholder.clone(),
                kind: span.kind,
                value: original.clone(),
                occurrences: vec![original],
            }),
        }
        pos = span.end;
    }
    out.push_str(&text[pos..]);
    (out, mapping)
}

/// Parses a well-formed placeholder `[KIND_N]` at the start of `s`; returns its byte length.
fn placeholder_at(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'[') {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() && (bytes[i].is_ascii_uppercase() || bytes[i] == b'_') {
        i += 1;
    }
    let name_end = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let has_digits = i > name_end;
    let valid = name_end > 2 && bytes[name_end - 1] == b'_' && has_digits;
    (valid && bytes.get(i) == Some(&b']')).then_some(i + 1)
}

/// Puts original values back for every placeholder listed in `mapping`.
///
/// The n-th occurrence of a placeholder gets the n-th original occurrence, so restoring the
/// redacted text gives back the input exactly. Extra occurrences get the first original
/// value. Text that only looks like a placeholder is left as it is.
pub fn restore(mapping: &Mapping, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut seen = vec![0usize; mapping.entries.len()];
    let mut pos = 0;
    let mut copied = 0;
    while let Some(offset) = text[pos..].find('[') {
        let at = pos + offset;
        let Some(len) = placeholder_at(&text[at..]) else {
            pos = at + 1;
            continue;
        };
        let token = &text[at..at + len];
        if let Some(index) = mapping.entries.iter().position(|e| e.placeholder == token) {
            let entry = &mapping.entries[index];
            let value = entry.occurrences.get(seen[index]).unwrap_or(&entry.value);
            seen[index] += 1;
            out.push_str(&text[copied..at]);
            out.push_str(value);
            copied = at + len;
        }
        pos = at + len;
    }
    out.push_str(&text[copied..]);
    out
}

/// Fills known placeholders in an LLM draft with their original values.
///
/// Placeholders missing from the mapping or mangled by the model (`[PHONE_9]`, `[PHONE 1]`,
/// `[PERSON-1]`, `[ PHONE_1 ]`, lowercase) are removed and never resolved to another value,
/// because guessing could leak one client's data into another's reply. Doubled spaces and
/// spaces before punctuation left by a removal are tidied.
pub fn restore_draft(mapping: &Mapping, draft: &str) -> String {
    let mut out = String::with_capacity(draft.len() + 64);
    let mut pos = 0;
    let mut removed_any = false;
    while let Some((start, end)) = draft::next_placeholder_like(draft, pos) {
        out.push_str(&draft[pos..start]);
        let token = &draft[start..end];
        match mapping.get(token) {
            Some(entry) => out.push_str(&entry.value),
            None => removed_any = true,
        }
        pos = end;
    }
    out.push_str(&draft[pos..]);
    if removed_any {
        draft::tidy_spaces(&out)
    } else {
        out
    }
}

mod draft {
    use regex::Regex;
    use std::sync::LazyLock;

    /// Anything the model may have meant as a placeholder: a bracketed kind name with a
    /// number, in any case and with spaces, hyphens or underscores around or inside.
    static PLACEHOLDER_LIKE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"\[\s*(?i:phone|email|e-mail|card|snils|inn|passport|oms|birthdate|address|car[ _\-]?plate|handle|telegram[ _\-]?handle|person|name)(?:[ _\-]*\d+)?\s*\]",
        )
        .expect("static regex")
    });

    static SPACES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[ \t]{2,}").expect("static regex"));
    static SPACE_BEFORE_PUNCT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[ \t]+([,.!?;:])").expect("static regex"));
    static EMPTY_BRACKETS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\(\s*\)").expect("static regex"));

    pub(super) fn next_placeholder_like(text: &str, from: usize) -> Option<(usize, usize)> {
        PLACEHOLDER_LIKE
            .find_at(text, from)
            .map(|m| (m.start(), m.end()))
    }

    pub(super) fn tidy_spaces(text: &str) -> String {
        let text = EMPTY_BRACKETS.replace_all(text, "");
        let text = SPACES.replace_all(&text, " ");
        let text = SPACE_BEFORE_PUNCT.replace_all(&text, "$1");
        text.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_share_detected_placeholders() {
        let known = [
            KnownValue {
                kind: PiiKind::Person,
                value: "Зарема".into(),
            },
            KnownValue {
                kind: PiiKind::Phone,
                value: "+7 917 482-16-39".into(),
            },
            KnownValue {
                kind: PiiKind::Email,
                value: "z@example.com".into(),
            },
        ];
        let text = "Это зарема, мой номер 89174821639";
        let (redaction, placeholders) = redact_with_known(text, &known);
        assert!(
            !redaction.text.to_lowercase().contains("зарема"),
            "{}",
            redaction.text
        );
        assert!(!redaction.text.contains("4821639"), "{}", redaction.text);
        let phone = placeholders[1].as_deref().expect("phone placeholder");
        assert!(redaction.text.contains(phone), "{}", redaction.text);
        let email = placeholders[2].as_deref().expect("email placeholder");
        assert_eq!(
            redaction.mapping.get(email).map(|e| e.value.as_str()),
            Some("z@example.com")
        );
        assert_eq!(restore(&redaction.mapping, &redaction.text), text);
    }

    #[test]
    fn placeholder_at_accepts_only_well_formed() {
        assert_eq!(placeholder_at("[PHONE_1] x"), Some(9));
        assert_eq!(placeholder_at("[CAR_PLATE_12]"), Some(14));
        assert_eq!(placeholder_at("[PHONE 1]"), None);
        assert_eq!(placeholder_at("[PHONE_]"), None);
        assert_eq!(placeholder_at("[_1]"), None);
    }

    #[test]
    fn overlap_prefers_longer_then_confident() {
        let found = vec![
            Detection::new(PiiKind::Phone, 0, 11, 0.9),
            Detection::new(PiiKind::Snils, 0, 11, 0.95),
            Detection::new(PiiKind::Card, 0, 19, 0.5),
            Detection::new(PiiKind::Person, 20, 25, 0.8),
        ];
        let kept = resolve_overlaps(found);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].kind, PiiKind::Card);
        assert_eq!(kept[1].kind, PiiKind::Person);
    }

    #[test]
    fn restore_skips_unknown_placeholders() {
        let r = redact("[PHONE_1] тел 89174821639");
        assert_eq!(r.spans.len(), 1);
        assert_eq!(r.spans[0].placeholder, "[PHONE_2]");
        assert_eq!(r.restore(&r.text), "[PHONE_1] тел 89174821639");
    }

    #[test]
    fn tidy_removes_double_spaces() {
        assert_eq!(
            draft::tidy_spaces("Звоните  , пожалуйста"),
            "Звоните, пожалуйста"
        );
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use std::time::Instant;

    /// Prints time per detector over a JSON Lines corpus named by `REDACT_CORPUS`; run with
    /// `REDACT_CORPUS=leads.jsonl cargo test --release --lib -- --ignored --nocapture`.
    /// The first detector calls include building the lazy regexes and dictionaries.
    #[test]
    #[ignore]
    fn detector_timing() {
        let Some(path) = std::env::var_os("REDACT_CORPUS") else {
            return;
        };
        let Ok(input) = std::fs::read_to_string(path) else {
            return;
        };
        let texts: Vec<String> = input
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("text")?.as_str().map(str::to_string))
            .collect();
        let rounds = 200;
        let mut times = [0f64; 9];
        for _ in 0..rounds {
            for text in &texts {
                let mut out = Vec::new();
                let t = Instant::now();
                let mut buffer = String::new();
                let tokens = text::tokenize(text, &mut buffer);
                times[0] += t.elapsed().as_secs_f64();
                let t = Instant::now();
                phone::detect(text, &tokens, true, &mut out);
                times[1] += t.elapsed().as_secs_f64();
                let t = Instant::now();
                numbers::detect(text, &tokens, &mut out);
                times[2] += t.elapsed().as_secs_f64();
                let t = Instant::now();
                contact::detect(text, &mut out);
                birthdate::detect(text, &mut out);
                times[3] += t.elapsed().as_secs_f64();
                let t = Instant::now();
                address::detect(text, &tokens, &mut out);
                times[4] += t.elapsed().as_secs_f64();
                let t = Instant::now();
                plate::detect(text, &tokens, &mut out);
                times[5] += t.elapsed().as_secs_f64();
                let t = Instant::now();
                person::detect(text, &tokens, &mut out);
                times[6] += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let _ = health::detect(&tokens);
                times[7] += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let _ = redact(text);
                times[8] += t.elapsed().as_secs_f64();
            }
        }
        let names = [
            "tokenize",
            "phone",
            "numbers",
            "contact+date",
            "address",
            "plate",
            "person",
            "health",
            "total",
        ];
        for (name, time) in names.iter().zip(times) {
            println!("{name:>14}: {:.3} s", time);
        }
    }
}
