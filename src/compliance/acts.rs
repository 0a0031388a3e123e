//! Destruction acts as plain text, for printing and signing.

use std::fmt::Write;

use crate::store::acts::Act;

fn id_list(ids: &[i64]) -> String {
    if ids.is_empty() {
        return "none".to_string();
    }
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders an act as plain text: a header, then one numbered paragraph per item.
pub fn to_text(act: &Act) -> String {
    let mut text = String::new();

    let kind = match act.kind.as_str() {
        "retention" => "scheduled destruction of personal data past its retention term",
        "subject_erase" => "destruction of personal data at the request of the data subject",
        other => other,
    };
    // Writing to a String cannot fail.
    let _ = writeln!(text, "DESTRUCTION ACT No. {}", act.id);
    let _ = writeln!(text, "Operator: {}", act.operator);
    let _ = writeln!(text, "Kind: {kind}");
    let _ = writeln!(text, "Information system: leadgate database");
    let _ = writeln!(text, "Performed by: {}", act.performed_by);
    let _ = writeln!(text, "Started: {}", act.started_at);
    let _ = writeln!(
        text,
        "Completed: {}",
        act.completed_at
            .as_deref()
            .unwrap_or("not completed (the run stopped; the next run continues this act)")
    );
    let total: i64 = act.items.iter().map(|item| item.count).sum();
    let _ = writeln!(text, "Records destroyed: {total}");

    for (number, item) in act.items.iter().enumerate() {
        let _ = writeln!(text);
        let _ = writeln!(text, "{}. {} ({})", number + 1, item.at, item.rule);
        let _ = writeln!(text, "   Reason: {}", item.reason);
        let _ = writeln!(text, "   Data: {}", item.category);
        let categories = if item.data_categories.is_empty() {
            "none".to_string()
        } else {
            item.data_categories.join(", ")
        };
        let _ = writeln!(text, "   Categories of personal data: {categories}");
        let _ = writeln!(text, "   Method: {}", item.method);
        let _ = writeln!(text, "   Records: {}", item.count);
        let _ = writeln!(text, "   Lead ids: {}", id_list(&item.lead_ids));
        let _ = writeln!(text, "   Subject ids: {}", id_list(&item.subject_ids));
        if !item.record_ids.is_empty() {
            let _ = writeln!(text, "   Record ids: {}", id_list(&item.record_ids));
        }
    }

    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "The act names data by ids and categories only; it holds none of the destroyed values."
    );
    text
}
