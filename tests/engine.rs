//! The inference engine on real GGUF files: tokenizer and greedy output against llama.cpp,
//! schema-constrained decoding, the prefix cache, and the worker's queue.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use leadgate::engine::model::Logits;
use leadgate::engine::{
    ChatMessage, Engine, EngineError, FinishReason, GenerateRequest, LoadedModel, Prompt, Sampling,
};
use serde_json::{Value, json};

fn fixture() -> Value {
    let path = common::root().join("tests/fixtures/peer_tokens.json");
    let text = std::fs::read_to_string(&path).expect("tests/fixtures/peer_tokens.json");
    serde_json::from_str(&text).expect("the fixture is JSON")
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

fn with_model<T>(name: &str, f: impl FnOnce(&mut LoadedModel) -> T) -> T {
    match name {
        common::SMOLLM => f(&mut common::smollm()),
        common::QWEN => f(&mut common::qwen()),
        other => panic!("no shared copy of {other}"),
    }
}

fn run(model: &mut LoadedModel, request: &GenerateRequest) -> leadgate::engine::Generation {
    let prepared = model.prepare(request).expect("a valid request");
    model.generate(prepared, &|| false).expect("generation")
}

fn chat(system: Option<&str>, user: &str) -> Prompt {
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(ChatMessage::system(system));
    }
    messages.push(ChatMessage::user(user));
    Prompt::Chat(messages)
}

#[test]
fn tokenizer_ids_equal_llama_cpp() {
    let fixture = fixture();
    let cases = fixture["tokenize"].as_array().unwrap();
    assert!(cases.len() >= 20, "the fixture holds too few cases");
    for case in cases {
        let name = case["model"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let special = case["special"].as_bool().unwrap();
        let expected = ids(&case["ids"]);
        let actual = with_model(name, |model| {
            let tokenizer = model.tokenizer();
            if special {
                tokenizer.encode_special(text)
            } else {
                tokenizer.encode_plain(text)
            }
            .unwrap()
        });
        assert_eq!(
            actual, expected,
            "{name}, case {} (special: {special})",
            case["case"]
        );
    }
}

#[test]
fn control_tokens_are_one_id_and_plain_text_never_is() {
    with_model(common::QWEN, |model| {
        let tokenizer = model.tokenizer();
        let special = tokenizer.encode_special("<|im_start|>").unwrap();
        assert_eq!(special.len(), 1);
        let plain = tokenizer.encode_plain("<|im_start|>").unwrap();
        assert!(plain.len() > 1, "client text became a control token");
        // Qwen2.5 ends a turn with <|im_end|> and a document with <|endoftext|>.
        let ends: BTreeSet<u32> = tokenizer.end_tokens().iter().copied().collect();
        for token in ["<|im_end|>", "<|endoftext|>"] {
            let id = tokenizer.encode_special(token).unwrap();
            assert_eq!(id.len(), 1);
            assert!(ends.contains(&id[0]), "{token} is not an end token");
        }
    });
}

#[test]
fn greedy_output_matches_llama_cpp() {
    let fixture = fixture();
    for case in fixture["greedy"].as_array().unwrap() {
        let name = case["model"].as_str().unwrap();
        let prompt = case["prompt"].as_str().unwrap();
        let mut expected = ids(&case["generated_ids"]);
        with_model(name, |model| {
            assert_eq!(
                model.encode_prompt(&Prompt::Text(prompt.into())).unwrap().0,
                ids(&case["prompt_ids"]),
                "{name}: prompt ids"
            );
            // The peer lists the end token it stopped on; the engine stops before it.
            if let Some(end) = expected
                .iter()
                .position(|&t| model.tokenizer().is_end_token(t))
            {
                expected.truncate(end);
            }
            expected.truncate(16);
            let request = GenerateRequest {
                prompt: Prompt::Text(prompt.into()),
                schema: None,
                max_tokens: 16,
                sampling: Sampling::Greedy,
            };
            let generation = run(model, &request);
            assert_eq!(generation.tokens, expected, "{name}, case {}", case["case"]);
        });
    }
}

/// Returns a qualification schema with enums, like the server's.
fn lead_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "service": {"enum": ["dentistry", "hair", "nails", "cosmetology", "massage", "other"]},
            "intent": {"enum": ["book_appointment", "price_inquiry", "reschedule", "cancel",
                                 "question", "complaint", "spam", "other"]},
            "urgency": {"enum": ["high", "normal", "low"]},
            "temperature": {"enum": ["hot", "warm", "cold"]},
            "summary": {"type": "string", "maxLength": 40}
        },
        "required": ["service", "intent", "urgency", "temperature", "summary"],
        "additionalProperties": false
    })
}

#[test]
fn every_corpus_lead_decodes_to_valid_json() {
    let schema = lead_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let corpus = std::fs::read_to_string(common::corpus_path()).expect("../shared/corpus");
    let system = "Classify the client's message. Answer with JSON only.";
    let mut model = common::smollm();
    let mut count = 0;
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let lead: Value = serde_json::from_str(line).unwrap();
        let request = GenerateRequest {
            prompt: chat(Some(system), lead["text"].as_str().unwrap()),
            schema: Some(schema.clone()),
            max_tokens: 160,
            sampling: Sampling::Greedy,
        };
        let generation = run(&mut model, &request);
        let id = &lead["id"];
        assert_eq!(generation.finish_reason, FinishReason::Stop, "lead {id}");
        let parsed: Value = serde_json::from_str(&generation.text)
            .unwrap_or_else(|e| panic!("lead {id}: output is not JSON: {e}"));
        assert_eq!(generation.json.as_ref(), Some(&parsed));
        let errors: Vec<String> = validator
            .iter_errors(&parsed)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "lead {id}: {errors:?}");
        count += 1;
    }
    assert_eq!(count, 100, "the corpus should hold 100 leads");
}

#[test]
fn cyrillic_and_emoji_strings_respect_the_schema() {
    let schema = json!({
        "type": "object",
        "properties": {
            "mood": {"enum": ["Отлично 😀", "Плохо 😢", "Ёжик 🦔"]},
            "greeting": {"type": "string", "pattern": "^[А-Яа-яЁё ,!]{1,30}$", "maxLength": 12}
        },
        "required": ["mood", "greeting"],
        "additionalProperties": false
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut model = common::smollm();
    for user in ["Как дела? Ответь по-русски.", "Поздоровайся с клиентом 🙂"]
    {
        let request = GenerateRequest {
            prompt: chat(None, user),
            schema: Some(schema.clone()),
            max_tokens: 60,
            sampling: Sampling::Greedy,
        };
        let generation = run(&mut model, &request);
        assert_eq!(generation.finish_reason, FinishReason::Stop);
        let value = generation.json.expect("complete output is parsed");
        assert!(validator.is_valid(&value), "{value}");
        let greeting = value["greeting"].as_str().unwrap();
        assert!(greeting.chars().count() <= 12);
        assert!(
            greeting
                .chars()
                .any(|c| ('а'..='я').contains(&c.to_lowercase().next().unwrap())
                    || c == 'ё'
                    || c == 'Ё')
        );
    }
}

#[test]
fn whitespace_is_bounded() {
    // The model is sampled hot so it would wander if spaces were free.
    let schema = json!({
        "type": "object",
        "properties": {
            "a": {"enum": ["x", "y"]},
            "b": {"type": "boolean"},
            "c": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}
        },
        "required": ["a", "b", "c"]
    });
    let mut model = common::smollm();
    for seed in 0..4 {
        let request = GenerateRequest {
            prompt: chat(None, "Give me JSON."),
            schema: Some(schema.clone()),
            max_tokens: 60,
            sampling: Sampling::TopP {
                temperature: 1.5,
                top_p: 1.0,
                seed,
            },
        };
        let generation = run(&mut model, &request);
        assert_eq!(generation.finish_reason, FinishReason::Stop);
        assert!(!generation.text.contains("  "), "{:?}", generation.text);
        assert!(!generation.text.contains('\n'), "{:?}", generation.text);
    }
}

#[test]
fn invalid_schemas_fail_closed() {
    let model = common::smollm();
    for schema in [
        json!({"type": "strin"}),
        json!({"type": "object", "properties": {"a": {"type": "string", "maxLength": "ten"}}}),
        json!({"enum": "not a list"}),
        json!(42),
    ] {
        let request = GenerateRequest {
            prompt: chat(None, "hello"),
            schema: Some(schema.clone()),
            max_tokens: 10,
            sampling: Sampling::Greedy,
        };
        match model.prepare(&request) {
            Err(EngineError::InvalidSchema { message }) => assert!(!message.is_empty()),
            Err(other) => panic!("{schema}: wrong error {other}"),
            Ok(_) => panic!("{schema} was accepted"),
        }
    }
}

#[test]
fn truncated_output_is_flagged_not_returned_as_json() {
    let schema = json!({
        "type": "object",
        "properties": {"summary": {"type": "string", "maxLength": 200}},
        "required": ["summary"]
    });
    let mut model = common::smollm();
    let request = GenerateRequest {
        prompt: chat(None, "Describe Paris in detail."),
        schema: Some(schema),
        max_tokens: 6,
        sampling: Sampling::Greedy,
    };
    let generation = run(&mut model, &request);
    assert_eq!(generation.finish_reason, FinishReason::Length);
    assert_eq!(generation.tokens.len(), 6);
    assert!(generation.json.is_none());
    assert!(serde_json::from_str::<Value>(&generation.text).is_err());
}

#[test]
fn requests_in_a_row_are_independent() {
    let mut model = common::smollm();
    let request = |user: &str| GenerateRequest {
        prompt: chat(Some("You are a helpful assistant."), user),
        schema: None,
        max_tokens: 24,
        sampling: Sampling::Greedy,
    };
    let first = run(&mut model, &request("What is the capital of France?"));
    let other = run(&mut model, &request("Name three colours."));
    let again = run(&mut model, &request("What is the capital of France?"));
    assert_ne!(first.tokens, other.tokens);
    assert_eq!(first.tokens, again.tokens);
    // The shared system prompt came from the prefix cache the second and third time.
    assert!(other.timings.cached_tokens > 0);
    assert_eq!(other.timings.cached_tokens, again.timings.cached_tokens);
    assert!(other.timings.cached_tokens < other.timings.prompt_tokens);

    // A model that never processed the other requests generates the same tokens.
    let mut fresh = LoadedModel::load(&common::model_path(common::SMOLLM)).unwrap();
    let alone = run(&mut fresh, &request("Name three colours."));
    assert_eq!(alone.timings.cached_tokens, 0);
    assert_eq!(alone.tokens, other.tokens);
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn appended_equals_whole(model: &LoadedModel) {
    let text = "<|im_start|>user\nЗдравствуйте! Сколько стоит чистка зубов и можно ли \
                записаться на субботу?<|im_end|>\n<|im_start|>assistant\n";
    let tokens = model.tokenizer().encode_special(text).unwrap();
    assert!(tokens.len() > 20);
    let m = model.model();
    let mut cache = m.new_cache();
    let whole = m.forward(&tokens, &mut cache, Logits::All).unwrap();
    let whole = whole.to_vec2::<f32>().unwrap();
    for split in [1, tokens.len() / 2, tokens.len() - 3] {
        let mut cache = m.new_cache();
        m.forward(&tokens[..split], &mut cache, Logits::Last)
            .unwrap();
        let rest = m
            .forward(&tokens[split..], &mut cache, Logits::All)
            .unwrap();
        assert_eq!(cache.len(), tokens.len());
        for (i, row) in rest.to_vec2::<f32>().unwrap().iter().enumerate() {
            let diff = max_abs_diff(row, &whole[split + i]);
            assert!(
                diff < 1e-3,
                "split {split}, position {}: diff {diff}",
                split + i
            );
        }
    }
    // And token by token, as generation feeds them.
    let mut cache = m.new_cache();
    for (i, token) in tokens.iter().enumerate() {
        let row = m.forward(&[*token], &mut cache, Logits::Last).unwrap();
        let row = row.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let diff = max_abs_diff(&row, &whole[i]);
        assert!(diff < 1e-3, "one by one, position {i}: diff {diff}");
    }
}

#[test]
fn appended_tokens_give_the_logits_of_the_whole_sequence() {
    appended_equals_whole(&common::smollm());
}

#[test]
fn appended_tokens_give_the_logits_of_the_whole_sequence_on_qwen() {
    appended_equals_whole(&common::qwen());
}

#[test]
fn logits_of_equals_full_logits_qwen() {
    // Qwen's tied output projection is Q8_0, which leadgate can compute for a few tokens
    // only, as constrained decoding does when a schema allows a handful of tokens.
    let model = common::qwen();
    let m = model.model();
    let tokens = model
        .tokenizer()
        .encode_special("Запись на массаж")
        .unwrap();
    let mut cache = m.new_cache();
    let hidden = m.forward_hidden(&tokens, &mut cache).unwrap();
    let full = m.logits(&hidden).unwrap();
    let full = full.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ids = [0, 7, 151_935, 42_000, 42_001, 42_002, 42_003, 42_004, 13];
    let chosen = m
        .logits_of(&hidden, &ids)
        .unwrap()
        .expect("Qwen's output projection is Q8_0");
    let expected: Vec<f32> = ids.iter().map(|&i| full[i]).collect();
    assert_eq!(chosen, expected);
}

#[test]
fn sampling_with_a_seed_repeats() {
    let mut model = common::smollm();
    let request = |seed| GenerateRequest {
        prompt: chat(None, "Tell me a short story."),
        schema: None,
        max_tokens: 20,
        sampling: Sampling::TopP {
            temperature: 1.0,
            top_p: 0.9,
            seed,
        },
    };
    let a = run(&mut model, &request(7));
    let b = run(&mut model, &request(7));
    let c = run(&mut model, &request(8));
    assert_eq!(a.tokens, b.tokens);
    assert_ne!(a.tokens, c.tokens);
    let bad = GenerateRequest {
        sampling: Sampling::TopP {
            temperature: 0.0,
            top_p: 0.9,
            seed: 1,
        },
        ..request(1)
    };
    assert!(matches!(
        model.prepare(&bad),
        Err(EngineError::InvalidParameter {
            name: "temperature",
            ..
        })
    ));
}

#[test]
fn full_queue_rejects_at_once_and_dropped_callers_cancel() {
    let model = LoadedModel::load(&common::model_path(common::SMOLLM)).unwrap();
    let engine = Engine::start(model, 1);
    let long = GenerateRequest {
        prompt: chat(None, "Write a long essay about the sea."),
        schema: None,
        max_tokens: 400,
        sampling: Sampling::Greedy,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let running = tokio::spawn({
            let engine = engine.clone();
            let long = long.clone();
            async move { engine.generate(long).await }
        });
        // Wait until the worker has taken the first request off the queue.
        let deadline = Instant::now() + Duration::from_secs(20);
        while engine
            .stats()
            .started
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            assert!(Instant::now() < deadline, "the worker never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let waiting = tokio::spawn({
            let engine = engine.clone();
            let long = long.clone();
            async move { engine.generate(long).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(engine.queue_depth(), 1);
        let asked = Instant::now();
        let rejected = engine.generate(long.clone()).await;
        assert!(
            matches!(rejected, Err(EngineError::Overloaded { capacity: 1 })),
            "{rejected:?}"
        );
        assert!(asked.elapsed() < Duration::from_millis(100));

        // Both callers give up: the running one stops, the waiting one never starts.
        running.abort();
        waiting.abort();
        let deadline = Instant::now() + Duration::from_secs(30);
        while engine
            .stats()
            .cancelled
            .load(std::sync::atomic::Ordering::Relaxed)
            < 2
        {
            assert!(Instant::now() < deadline, "cancellations were not counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = engine.stats();
        assert_eq!(stats.started.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            stats.completed.load(std::sync::atomic::Ordering::Relaxed),
            0
        );

        // The engine still serves the next caller.
        let short = GenerateRequest {
            max_tokens: 4,
            ..long.clone()
        };
        let generation = engine.generate(short).await.unwrap();
        assert_eq!(generation.tokens.len(), 4);
    });
}

/// Writes a GGUF file with metadata only, naming `architecture`.
fn write_metadata_only_gguf(path: &std::path::Path, architecture: &str) {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes()); // tensors
    bytes.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    let key = b"general.architecture";
    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&8u32.to_le_bytes()); // string
    bytes.extend_from_slice(&(architecture.len() as u64).to_le_bytes());
    bytes.extend_from_slice(architecture.as_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn unsupported_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    write_metadata_only_gguf(&path, "mamba");
    let error = LoadedModel::load(&path)
        .err()
        .expect("a mamba file must not load");
    assert!(
        matches!(error, EngineError::UnsupportedArchitecture { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("mamba") && message.contains("qwen2"),
        "{message}"
    );

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"not a gguf file at all").unwrap();
    let error = LoadedModel::load(&garbage)
        .err()
        .expect("garbage must not load");
    assert!(matches!(error, EngineError::InvalidGguf { .. }), "{error}");
}

#[test]
fn loading_reports_the_model() {
    let model = common::qwen();
    let info = model.info();
    assert_eq!(info.architecture, "qwen2");
    assert!(info.vocab_size > 150_000);
    assert!(info.context_length >= 4096);
    let small = common::smollm();
    assert_eq!(small.info().architecture, "llama");
}
