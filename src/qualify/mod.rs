//! Qualification of one redacted lead: the prompt and JSON schema built from the catalog,
//! the model's answer, and the rules that combine it with deterministic signals.
//!
//! This module sees only redacted text. The system message holds everything that does
//! not depend on the lead (instructions, catalog, examples), so the engine's prefix cache
//! computes it once; the user message holds only the redacted lead.

pub mod rules;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{SERVICE_IDS, Service, Settings};
use crate::engine::{ChatMessage, GenerateRequest, Generation, Prompt, Sampling};
pub use rules::{Fields, ModelAnswer, Signals};

/// The prompt file's name, stored with each qualification.
pub const PROMPT_VERSION: &str = "qualify.v1";
const PROMPT_TEMPLATE: &str = include_str!("../../prompts/qualify.v1.md");

pub const INTENTS: [&str; 8] = [
    "book_appointment",
    "price_inquiry",
    "reschedule",
    "cancel",
    "question",
    "complaint",
    "spam",
    "other",
];
pub const URGENCIES: [&str; 3] = ["high", "normal", "low"];
pub const TEMPERATURES: [&str; 3] = ["hot", "warm", "cold"];
pub const LANGUAGES: [&str; 5] = ["ru", "en", "translit", "mixed", "other"];
pub const MISSING_FIELDS: [&str; 5] = [
    "name",
    "phone",
    "preferred_time",
    "service_details",
    "car_details",
];
/// The maximum length of the summary in characters.
pub const SUMMARY_MAX_CHARS: usize = 60;
/// How many stems per service the prompt lists; the rules use all of them.
const PROMPT_STEMS: usize = 4;

/// A finished qualification of one lead.
#[derive(Debug, Clone, Serialize)]
pub struct Qualification {
    pub service: String,
    pub intent: String,
    pub urgency: String,
    pub temperature: String,
    pub language: String,
    pub missing_fields: Vec<String>,
    pub summary: String,
    pub score: u8,
}

/// Builds model requests for leads and turns the model's answers into qualifications.
pub struct Qualifier {
    system_prompt: String,
    schema: Value,
    services: Vec<Service>,
    max_tokens: usize,
}

impl Qualifier {
    /// Renders the prompt and the schema for the catalog in `settings`.
    ///
    /// # Errors
    /// When the prompt template does not render.
    pub fn new(settings: &Settings) -> anyhow::Result<Qualifier> {
        let mut environment = minijinja::Environment::new();
        environment.set_trim_blocks(false);
        let services: Vec<Value> = settings
            .services
            .iter()
            .map(|s| {
                let stems: Vec<&String> = s.stems.iter().take(PROMPT_STEMS).collect();
                json!({ "id": s.id, "name": s.name, "stems": stems })
            })
            .collect();
        let system_prompt = environment
            .render_str(PROMPT_TEMPLATE, json!({ "services": services }))
            .map_err(|e| anyhow::anyhow!("cannot render prompts/{PROMPT_VERSION}.md: {e}"))?;
        Ok(Qualifier {
            system_prompt,
            schema: schema(&settings.services),
            services: settings.services.clone(),
            max_tokens: settings.max_tokens,
        })
    }

    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Returns the greedy, schema-constrained model request for one redacted message.
    pub fn request(&self, redacted: &str) -> GenerateRequest {
        GenerateRequest {
            prompt: Prompt::Chat(vec![
                ChatMessage::system(self.system_prompt.clone()),
                ChatMessage::user(format!("Message: {redacted}")),
            ]),
            schema: Some(self.schema.clone()),
            max_tokens: self.max_tokens,
            sampling: Sampling::Greedy,
        }
    }

    /// Combines the model's output (when there is a complete one) with the rules.
    ///
    /// Without a usable answer (the token limit cut it, or it failed), the rules decide
    /// alone and the model's fields count as `other`, `normal`, `warm`.
    pub fn interpret(
        &self,
        redacted: &str,
        name_known: bool,
        generation: Option<&Generation>,
    ) -> Qualification {
        let answer = generation
            .and_then(|g| g.json.as_ref())
            .and_then(parse_answer)
            .unwrap_or_else(|| ModelAnswer {
                service: "other".into(),
                intent: "other".into(),
                urgency: "normal".into(),
                temperature: "warm".into(),
                missing_fields: Vec::new(),
                summary: String::new(),
            });
        let signals = rules::signals(redacted, &self.services);
        let fields = rules::combine(&signals, &answer);
        let score = rules::score(&fields);
        let missing_fields = missing_fields(&answer, &fields, redacted, name_known);
        let summary: String = answer
            .summary
            .trim()
            .chars()
            .take(SUMMARY_MAX_CHARS)
            .collect();
        Qualification {
            service: fields.service,
            intent: fields.intent,
            urgency: fields.urgency,
            temperature: fields.temperature,
            language: fields.language,
            missing_fields,
            summary,
            score,
        }
    }
}

/// Keeps the model's missing fields that the message does not already answer.
fn missing_fields(
    answer: &ModelAnswer,
    fields: &Fields,
    redacted: &str,
    name_known: bool,
) -> Vec<String> {
    if fields.intent == "spam" {
        return Vec::new();
    }
    let mut missing: Vec<String> = answer
        .missing_fields
        .iter()
        .filter(|f| match f.as_str() {
            "name" => !name_known && !redacted.contains("[PERSON_"),
            "phone" => !redacted.contains("[PHONE_"),
            "car_details" => fields.service == "auto_service",
            _ => true,
        })
        .cloned()
        .collect();
    missing.dedup();
    missing
}

fn parse_answer(value: &Value) -> Option<ModelAnswer> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    Some(ModelAnswer {
        service: text("service")?,
        intent: text("intent")?,
        urgency: text("urgency")?,
        temperature: text("temperature")?,
        missing_fields: value
            .get("missing_fields")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        summary: text("summary").unwrap_or_default(),
    })
}

/// Builds the JSON schema of the model's answer. Property order is the generation order:
/// intent first, because the other fields depend on it.
pub fn schema(services: &[Service]) -> Value {
    let service_ids: Vec<&str> = SERVICE_IDS
        .iter()
        .copied()
        .filter(|id| services.iter().any(|s| s.id == *id))
        .collect();
    json!({
        "type": "object",
        "properties": {
            "intent": { "enum": INTENTS },
            "service": { "enum": service_ids },
            "urgency": { "enum": URGENCIES },
            "temperature": { "enum": TEMPERATURES },
            "language": { "enum": LANGUAGES },
            "missing_fields": {
                "type": "array",
                "items": { "enum": MISSING_FIELDS },
                "maxItems": 3
            },
            "summary": { "type": "string", "maxLength": SUMMARY_MAX_CHARS }
        },
        "required": [
            "intent", "service", "urgency", "temperature", "language", "missing_fields",
            "summary"
        ],
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lists_catalog_and_keeps_lead_out() {
        let settings = Settings::defaults();
        let qualifier = Qualifier::new(&settings).unwrap();
        let request = qualifier.request("Болит зуб [PERSON_1]");
        let Prompt::Chat(messages) = &request.prompt else {
            panic!("expected a chat prompt");
        };
        assert!(messages[0].content.contains("- dentistry: Стоматология"));
        assert!(!messages[0].content.contains("Болит зуб"));
        assert!(messages[1].content.contains("Болит зуб"));
    }

    #[test]
    fn schema_enumerates_service_ids() {
        let settings = Settings::defaults();
        let schema = schema(&settings.services);
        let ids = schema["properties"]["service"]["enum"].as_array().unwrap();
        assert_eq!(ids.len(), SERVICE_IDS.len());
    }
}
