//! Byte-level BPE tokenizers built from GGUF metadata, or from a `tokenizer.json` beside
//! the model file.
//!
//! Two tokenizers share one vocabulary. `special` turns text such as `<|im_start|>` into its
//! single control token and is used for text that leadgate writes itself (chat templates).
//! `plain` treats that same text as ordinary characters and is used for every text a client
//! wrote, so a lead cannot smuggle control tokens into the prompt.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::error::{EngineError, Result};

/// The pre-tokenizer split of Qwen2 (`tokenizer.ggml.pre = "qwen2"`): single digits,
/// letters with one leading non-letter, and runs of punctuation or whitespace.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The Llama 3 split (`llama-bpe`): like Qwen2 but digits in groups of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Texts of control tokens that end a turn or a document in the model families leadgate
/// runs; a GGUF file often names only one of them as `eos_token_id`.
const END_TOKEN_TEXTS: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
];

/// GGUF `tokenizer.ggml.token_type` values of tokens that are never produced by merges.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

pub struct TextTokenizer {
    special: Tokenizer,
    plain: Tokenizer,
    end_tokens: Vec<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

fn tokenizer_error(message: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer {
        message: message.to_string(),
    }
}

fn string_array<'a>(content: &'a Content, key: &str) -> Result<Vec<&'a str>> {
    let value = content
        .metadata
        .get(key)
        .ok_or_else(|| tokenizer_error(format!("missing metadata key `{key}`")))?;
    let items = value
        .to_vec()
        .map_err(|_| tokenizer_error(format!("`{key}` is not an array")))?;
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.as_str()),
            _ => Err(tokenizer_error(format!("`{key}` holds a non-string item"))),
        })
        .collect()
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::U8(v) => Some(i64::from(*v)),
        Value::I8(v) => Some(i64::from(*v)),
        Value::U16(v) => Some(i64::from(*v)),
        Value::I16(v) => Some(i64::from(*v)),
        Value::U32(v) => Some(i64::from(*v)),
        Value::I32(v) => Some(i64::from(*v)),
        Value::U64(v) => i64::try_from(*v).ok(),
        Value::I64(v) => Some(*v),
        _ => None,
    }
}

fn metadata_id(content: &Content, key: &str) -> Option<u32> {
    content
        .metadata
        .get(key)
        .and_then(integer)
        .and_then(|v| u32::try_from(v).ok())
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(
            SplitPattern::Regex(pattern.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(tokenizer_error)?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ])
        .into())
    };
    match pre {
        "qwen2" => split(QWEN2_SPLIT),
        "llama-bpe" | "llama3" | "smaug-bpe" => split(LLAMA3_SPLIT),
        // SmolLM and StarCoder isolate every digit, then apply the GPT-2 split.
        "smollm" | "starcoder" | "refact" => Ok(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, false, true).into(),
        ])
        .into()),
        "gpt2" | "default" => Ok(ByteLevel::new(false, false, true).into()),
        other => Err(tokenizer_error(format!(
            "unsupported pre-tokenizer `{other}` (supported: qwen2, llama-bpe, smollm, gpt2)"
        ))),
    }
}

impl TextTokenizer {
    /// Builds the tokenizer from `tokenizer.json` when `json_path` exists, else from the
    /// GGUF metadata. End tokens always come from the GGUF metadata.
    pub fn load(content: &Content, json_path: Option<&Path>) -> Result<Self> {
        let (special, plain) = match json_path.filter(|p| p.is_file()) {
            Some(path) => from_tokenizer_json(path)?,
            None => from_gguf(content)?,
        };
        let tokens = string_array(content, "tokenizer.ggml.tokens").unwrap_or_default();
        let token_text = |key: &str| {
            metadata_id(content, key).and_then(|id| tokens.get(id as usize).map(|s| s.to_string()))
        };
        let mut end_tokens: Vec<u32> = ["eos_token_id", "eot_token_id", "eom_token_id"]
            .iter()
            .filter_map(|key| metadata_id(content, &format!("tokenizer.ggml.{key}")))
            .collect();
        for text in END_TOKEN_TEXTS {
            if let Some(id) = special.token_to_id(text) {
                end_tokens.push(id);
            }
        }
        end_tokens.sort_unstable();
        end_tokens.dedup();
        if end_tokens.is_empty() {
            return Err(tokenizer_error("the model names no end-of-sequence token"));
        }
        Ok(Self {
            special,
            plain,
            end_tokens,
            bos_token: token_text("tokenizer.ggml.bos_token_id"),
            eos_token: token_text("tokenizer.ggml.eos_token_id"),
        })
    }

    /// Encodes text that leadgate wrote, turning control-token text into control tokens.
    pub fn encode_special(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.special.encode(text, false).map_err(tokenizer_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes text that a client wrote; control-token text stays ordinary text.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.plain.encode(text, false).map_err(tokenizer_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes generated tokens, leaving out control tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.special.decode(ids, true).map_err(tokenizer_error)
    }

    /// Tokens after which generation stops, such as `<|im_end|>` and `<|endoftext|>`.
    pub fn end_tokens(&self) -> &[u32] {
        &self.end_tokens
    }

    pub fn is_end_token(&self, id: u32) -> bool {
        self.end_tokens.contains(&id)
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The tokenizer that parses control tokens, for building the constraint's token trie.
    pub fn hf_tokenizer(&self) -> &Tokenizer {
        &self.special
    }

    pub fn vocab_size(&self) -> usize {
        self.special.get_vocab_size(true)
    }
}

fn from_gguf(content: &Content) -> Result<(Tokenizer, Tokenizer)> {
    let model = content
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(|s| s.as_str())
        .unwrap_or("");
    if model != "gpt2" {
        return Err(tokenizer_error(format!(
            "tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`); \
             put a tokenizer.json beside the model file"
        )));
    }
    let tokens = string_array(content, "tokenizer.ggml.tokens")?;
    let merges = string_array(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| tokenizer_error("a merge has no space between its two parts"))
        })
        .collect::<Result<Vec<_>>>()?;
    let token_types: Vec<i64> = content
        .metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|items| items.iter().map(|v| integer(v).unwrap_or(1)).collect())
        .unwrap_or_default();
    let pre = content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(|s| s.as_str())
        .unwrap_or("default");

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.to_string(), id as u32))
        .collect();
    let build = || -> Result<Tokenizer> {
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.clone(), merges.clone())
            .build()
            .map_err(tokenizer_error)?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        Ok(tokenizer)
    };
    let plain = build()?;
    let mut special = build()?;
    let added: Vec<AddedToken> = token_types
        .iter()
        .enumerate()
        .filter(|(_, kind)| matches!(**kind, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
        .filter_map(|(id, _)| tokens.get(id))
        .map(|text| AddedToken::from(text.to_string(), true))
        .collect();
    special.add_special_tokens(&added);
    Ok((special, plain))
}

fn from_tokenizer_json(path: &Path) -> Result<(Tokenizer, Tokenizer)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| tokenizer_error(format!("cannot read {}: {e}", path.display())))?;
    let special: Tokenizer = text.parse().map_err(tokenizer_error)?;
    let mut json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| tokenizer_error(format!("{} is not JSON: {e}", path.display())))?;
    json["added_tokens"] = serde_json::Value::Array(Vec::new());
    let plain: Tokenizer = json.to_string().parse().map_err(tokenizer_error)?;
    Ok((special, plain))
}
