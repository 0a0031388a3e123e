//! Evaluation of [`redact`](super::redact) against labelled JSON Lines: one object per line with
//! `text`, `pii: [{type, text}]` and `special_category`.
//!
//! A label is found when a predicted span of the same type covers the label's text (every
//! occurrence of the label text in the message is tried). A predicted span that covers no
//! label of its type is a false positive.

use super::{PiiKind, redact};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
struct Lead {
    #[serde(default)]
    id: String,
    text: String,
    #[serde(default)]
    pii: Vec<Label>,
    #[serde(default)]
    special_category: bool,
}

#[derive(Debug, Deserialize)]
struct Label {
    #[serde(rename = "type")]
    kind: String,
    text: String,
}

/// Counts and scores for one PII type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeScore {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
}

/// One disagreement, for reading the errors; texts are from the evaluated file.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub id: String,
    pub kind: String,
    /// `false_negative`, `false_positive` or `health_flag`.
    pub error: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EvalReport {
    pub messages: usize,
    /// Lines that were not valid JSON or lacked `text`.
    pub skipped_lines: usize,
    pub per_type: BTreeMap<String, TypeScore>,
    pub precision: f64,
    pub recall: f64,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// Share of messages whose `special_category` flag matches the label.
    pub health_agreement: f64,
    pub misses: Vec<Miss>,
}

/// A label's type, every byte range where its text occurs in the message, and the text.
type LabelPositions<'a> = (PiiKind, Vec<(usize, usize)>, &'a str);

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        1.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// Evaluates redaction on JSON Lines input; invalid lines are counted and skipped.
pub fn evaluate(jsonl: &str) -> EvalReport {
    let mut report = EvalReport::default();
    let mut health_agree = 0;
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(lead) = serde_json::from_str::<Lead>(line) else {
            report.skipped_lines += 1;
            continue;
        };
        report.messages += 1;
        let result = redact(&lead.text);
        if result.special_category == lead.special_category {
            health_agree += 1;
        } else {
            report.misses.push(Miss {
                id: lead.id.clone(),
                kind: "HEALTH".into(),
                error: "health_flag",
                text: format!("expected {}", lead.special_category),
            });
        }

        let labels: Vec<LabelPositions> = lead
            .pii
            .iter()
            .filter_map(|label| {
                let kind = PiiKind::parse(&label.kind)?;
                let positions = lead
                    .text
                    .match_indices(label.text.as_str())
                    .map(|(at, s)| (at, at + s.len()))
                    .collect();
                Some((kind, positions, label.text.as_str()))
            })
            .collect();

        for (kind, positions, label_text) in &labels {
            let found = result.spans.iter().any(|s| {
                s.kind == *kind
                    && positions
                        .iter()
                        .any(|&(start, end)| s.start <= start && end <= s.end)
            });
            let score = report
                .per_type
                .entry(kind.as_str().to_string())
                .or_default();
            if found {
                score.tp += 1;
            } else {
                score.fn_ += 1;
                report.misses.push(Miss {
                    id: lead.id.clone(),
                    kind: kind.as_str().into(),
                    error: "false_negative",
                    text: (*label_text).to_string(),
                });
            }
        }
        for span in &result.spans {
            let covers_label = labels.iter().any(|(kind, positions, _)| {
                *kind == span.kind
                    && positions
                        .iter()
                        .any(|&(start, end)| span.start <= start && end <= span.end)
            });
            if !covers_label {
                let score = report
                    .per_type
                    .entry(span.kind.as_str().to_string())
                    .or_default();
                score.fp += 1;
                report.misses.push(Miss {
                    id: lead.id.clone(),
                    kind: span.kind.as_str().into(),
                    error: "false_positive",
                    text: lead.text[span.start..span.end].to_string(),
                });
            }
        }
    }
    for score in report.per_type.values_mut() {
        score.precision = ratio(score.tp, score.tp + score.fp);
        score.recall = ratio(score.tp, score.tp + score.fn_);
        report.tp += score.tp;
        report.fp += score.fp;
        report.fn_ += score.fn_;
    }
    report.precision = ratio(report.tp, report.tp + report.fp);
    report.recall = ratio(report.tp, report.tp + report.fn_);
    report.health_agreement = ratio(health_agree, report.messages);
    report
}
