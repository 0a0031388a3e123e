//! Invariants of a redaction that the fuzz targets check on every input.
//!
//! Each check panics with a message that names the broken rule and gives offsets and
//! placeholders only, never the input text, because libFuzzer saves the input as the crash
//! file anyway.

use leadgate::redact::{PiiKind, Redaction, restore, restore_draft};

/// Checks every invariant of `redaction`, the result of redacting `text`.
///
/// Set `known_entries` when the redaction came from `redact_with_known`, because then a
/// mapping entry may be for a contact value that the text does not contain.
pub fn check_redaction(text: &str, redaction: &Redaction, known_entries: bool) {
    check_spans(text, redaction);
    check_mapping(text, redaction, known_entries);
    let restored = restore(&redaction.mapping, &redaction.text);
    assert!(
        restored == text,
        "restore(redact(x)) != x: {} bytes in, {} bytes restored",
        text.len(),
        restored.len()
    );
    // A draft in placeholder form must be fillable whatever it contains.
    let _ = restore_draft(&redaction.mapping, &redaction.text);
    assert_eq!(
        redaction.special_category,
        !redaction.health_terms.is_empty(),
        "special_category disagrees with the health terms found"
    );
    for hit in &redaction.health_terms {
        assert!(
            hit.start < hit.end && hit.end <= text.len(),
            "health term {}..{} is outside the {} byte text",
            hit.start,
            hit.end,
            text.len()
        );
        assert!(
            text.is_char_boundary(hit.start) && text.is_char_boundary(hit.end),
            "health term {}..{} splits a character",
            hit.start,
            hit.end
        );
    }
}

/// Returns the number in `placeholder` when it is exactly `[KIND_N]` for `kind`, with N a
/// decimal number from 1 and without leading zeros.
pub fn placeholder_number(kind: PiiKind, placeholder: &str) -> Option<u64> {
    let digits = placeholder
        .strip_prefix('[')?
        .strip_suffix(']')?
        .strip_prefix(kind.as_str())?
        .strip_prefix('_')?;
    let well_formed = !digits.is_empty()
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    well_formed.then(|| digits.parse().ok()).flatten()
}

fn check_spans(text: &str, redaction: &Redaction) {
    let mut previous_end = 0;
    for span in &redaction.spans {
        assert!(
            span.start < span.end && span.end <= text.len(),
            "span {}..{} is empty or outside the {} byte text",
            span.start,
            span.end,
            text.len()
        );
        assert!(
            span.start >= previous_end,
            "span {}..{} overlaps or precedes the span that ends at {previous_end}",
            span.start,
            span.end
        );
        assert!(
            text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
            "span {}..{} splits a character",
            span.start,
            span.end
        );
        assert!(
            placeholder_number(span.kind, &span.placeholder).is_some(),
            "placeholder {:?} is not a well-formed {} placeholder",
            span.placeholder,
            span.kind.as_str()
        );
        assert!(
            !text.contains(&span.placeholder),
            "placeholder {} was issued although the input contains it",
            span.placeholder
        );
        previous_end = span.end;
    }
}

fn check_mapping(text: &str, redaction: &Redaction, known_entries: bool) {
    let entries = &redaction.mapping.entries;
    for (index, entry) in entries.iter().enumerate() {
        assert!(
            placeholder_number(entry.kind, &entry.placeholder).is_some(),
            "mapping placeholder {:?} is not a well-formed {} placeholder",
            entry.placeholder,
            entry.kind.as_str()
        );
        assert!(
            entries[..index]
                .iter()
                .all(|e| e.placeholder != entry.placeholder),
            "placeholder {} has two mapping entries",
            entry.placeholder
        );
        let originals: Vec<&str> = redaction
            .spans
            .iter()
            .filter(|span| span.placeholder == entry.placeholder)
            .map(|span| {
                assert_eq!(
                    span.kind, entry.kind,
                    "a span and the mapping disagree on the kind of {}",
                    entry.placeholder
                );
                &text[span.start..span.end]
            })
            .collect();
        assert!(
            entry.occurrences == originals,
            "{} lists {} occurrences but stands for {} spans",
            entry.placeholder,
            entry.occurrences.len(),
            originals.len()
        );
        if originals.is_empty() {
            assert!(
                known_entries,
                "{} has a mapping entry but no span",
                entry.placeholder
            );
            assert!(
                !text.contains(&entry.placeholder),
                "unseen-value placeholder {} occurs in the input",
                entry.placeholder
            );
        } else {
            assert!(
                entry.value == originals[0],
                "the value of {} is not its first occurrence",
                entry.placeholder
            );
        }
    }
    for span in &redaction.spans {
        assert!(
            redaction.mapping.get(&span.placeholder).is_some(),
            "placeholder {} of span {}..{} has no mapping entry",
            span.placeholder,
            span.start,
            span.end
        );
    }
}
