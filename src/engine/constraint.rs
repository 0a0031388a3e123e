//! Decoding under a JSON schema with llguidance.
//!
//! The schema is checked against the JSON Schema meta-schema and compiled into a grammar;
//! either failure is an [`EngineError::InvalidSchema`]. Whitespace between JSON tokens is
//! fixed (`", "` between items, `": "` after keys, nothing else), so the model cannot spend
//! its token budget on blanks.

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};
use toktrie_hf_tokenizers::ByteTokenizer;

use super::error::{EngineError, Result};
use super::tokenizer::TextTokenizer;

/// Compiles schemas for one tokenizer; built once per model.
pub struct ConstraintFactory {
    factory: ParserFactory,
}

fn invalid_schema(message: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidSchema {
        message: message.to_string(),
    }
}

impl ConstraintFactory {
    /// Builds the token trie for `tokenizer`. `n_vocab` is the width of the model's logits,
    /// which may exceed the tokenizer's vocabulary (Qwen2.5 pads it to 151936).
    pub fn new(tokenizer: &TextTokenizer, n_vocab: usize) -> Result<Self> {
        let constraint_error = |e: anyhow::Error| EngineError::Constraint {
            message: e.to_string(),
        };
        let mut bytes = ByteTokenizer::from_tokenizer(tokenizer.hf_tokenizer().clone())
            .map_err(constraint_error)?;
        bytes.set_eos_tokens(tokenizer.end_tokens());
        let env: TokEnv = bytes
            .into_tok_env(Some(n_vocab.max(tokenizer.vocab_size())))
            .map_err(constraint_error)?;
        let mut factory = ParserFactory::new_simple(&env).map_err(constraint_error)?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// Compiles `schema` into a fresh constraint for one generation.
    ///
    /// # Errors
    /// [`EngineError::InvalidSchema`] when the schema is not a valid JSON Schema or uses a
    /// feature llguidance cannot enforce.
    pub fn json_schema(&self, schema: &Value) -> Result<Constraint> {
        if !schema.is_object() {
            return Err(invalid_schema("a schema must be a JSON object"));
        }
        jsonschema::meta::validate(schema).map_err(invalid_schema)?;
        let mut schema = schema.clone();
        schema["x-guidance"] = json!({
            "whitespace_flexible": false,
            "item_separator": ", ",
            "key_separator": ": ",
        });
        let grammar = TopLevelGrammar::from_json_schema(schema);
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(invalid_schema)?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(message) = matcher.get_error() {
            return Err(invalid_schema(message));
        }
        Ok(Constraint { matcher })
    }
}

/// The grammar state of one generation.
pub struct Constraint {
    matcher: Matcher,
}

impl Constraint {
    fn check(&self) -> Result<()> {
        match self.matcher.get_error() {
            Some(message) => Err(EngineError::Constraint { message }),
            None => Ok(()),
        }
    }

    /// Returns the tokens the grammar forces next, already accepted; the caller feeds them
    /// to the model without sampling.
    pub fn take_forced(&mut self) -> Result<Vec<u32>> {
        let forced = self.matcher.consume_ff_tokens();
        self.check()?;
        Ok(forced)
    }

    /// Returns the set of tokens allowed next.
    pub fn allowed(&mut self) -> Result<SimpleVob> {
        self.matcher
            .compute_mask()
            .map_err(|e| EngineError::Constraint {
                message: e.to_string(),
            })
    }

    /// Accepts one sampled token.
    pub fn accept(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|e| EngineError::Constraint {
                message: e.to_string(),
            })
    }

    /// Returns true once the output is complete and nothing more may follow.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Returns true when the output so far is a complete value.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}
