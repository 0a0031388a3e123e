//! One loaded model and the generation loop: prompt, prefix cache, constraint, sampling.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use llguidance::toktrie::SimpleVob;
use serde::Serialize;
use serde_json::Value;

use super::chat::{ChatMessage, ChatTemplate, Role};
use super::constraint::{Constraint, ConstraintFactory};
use super::error::{EngineError, Result};
use super::model::{KvCache, Model};
use super::sampling::{Sampler, Sampling};
use super::tokenizer::TextTokenizer;

/// What the model continues.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Text used as it is; control-token text in it becomes control tokens.
    Text(String),
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    /// A JSON Schema the output must match; `None` for free text.
    pub schema: Option<Value>,
    /// Maximum number of tokens to generate, forced tokens included.
    pub max_tokens: usize,
    pub sampling: Sampling,
}

impl GenerateRequest {
    pub fn chat(messages: Vec<ChatMessage>) -> Self {
        Self {
            prompt: Prompt::Chat(messages),
            schema: None,
            max_tokens: 256,
            sampling: Sampling::Greedy,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end token, or the schema's value was complete.
    Stop,
    /// The token limit cut the output; under a schema the text is not valid JSON.
    Length,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Tokens of the prompt, cached ones included.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
    pub prompt_ms: f64,
    pub generated_tokens: usize,
    /// Generated tokens that the schema forced, fed to the model without sampling.
    pub forced_tokens: usize,
    pub generate_ms: f64,
    /// Time spent waiting in the engine queue.
    pub queue_ms: f64,
}

#[derive(Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    /// The parsed output when a schema was given and the output is complete.
    pub json: Option<Value>,
    pub timings: Timings,
}

impl std::fmt::Debug for Generation {
    // The text may restate a client's words, so Debug shows only sizes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("text_bytes", &self.text.len())
            .field("tokens", &self.tokens.len())
            .field("finish_reason", &self.finish_reason)
            .field("timings", &self.timings)
            .finish()
    }
}

/// Facts about the loaded model file.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub architecture: String,
    pub file_bytes: u64,
    pub context_length: usize,
    pub vocab_size: usize,
    pub load_ms: f64,
}

/// Keys and values of recently seen prompt prefixes, such as a shared system prompt.
struct PrefixCache {
    entries: VecDeque<(Vec<u32>, KvCache)>,
    capacity: usize,
}

impl PrefixCache {
    /// Returns a copy of the cache of the longest stored prefix of `tokens`.
    fn longest_prefix(&self, tokens: &[u32]) -> Option<(usize, KvCache)> {
        self.entries
            .iter()
            .filter(|(prefix, _)| prefix.len() < tokens.len() && tokens.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(prefix, cache)| (prefix.len(), cache.clone()))
    }

    fn insert(&mut self, tokens: Vec<u32>, cache: KvCache) {
        if self.entries.iter().any(|(prefix, _)| *prefix == tokens) {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((tokens, cache));
    }
}

/// A model with its tokenizer, chat template and schema compiler.
pub struct LoadedModel {
    model: Model,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    constraints: ConstraintFactory,
    prefixes: PrefixCache,
    info: ModelInfo,
}

/// Returns the `tokenizer.json` that may sit beside a model file.
fn tokenizer_json_beside(path: &Path) -> Option<PathBuf> {
    let candidate = path.with_file_name("tokenizer.json");
    candidate.is_file().then_some(candidate)
}

impl LoadedModel {
    /// Loads a GGUF file: weights, tokenizer, chat template and the schema compiler.
    pub fn load(path: &Path) -> Result<Self> {
        let started = Instant::now();
        let io_error = |source| EngineError::ModelIo {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        let file_bytes = file.metadata().map_err(io_error)?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let content =
            gguf_file::Content::read(&mut reader).map_err(|e| EngineError::InvalidGguf {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let device = Device::Cpu;
        let vocab_size = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|info| info.shape.dims()[0])
            .unwrap_or(0);
        // The tokenizer and the constraint's token trie take about as long to build as the
        // weights take to read, so they are built on a second thread meanwhile.
        let (model, text) = std::thread::scope(|scope| {
            let text = scope.spawn(|| -> Result<_> {
                let tokenizer =
                    TextTokenizer::load(&content, tokenizer_json_beside(path).as_deref())?;
                let template_source = content
                    .metadata
                    .get("tokenizer.chat_template")
                    .and_then(|v| v.to_string().ok());
                let template = ChatTemplate::new(template_source.map(|s| s.as_str()))?;
                let constraints = ConstraintFactory::new(&tokenizer, vocab_size)?;
                Ok((tokenizer, template, constraints))
            });
            let model = device.with_context(|| Model::load(&content, &mut reader, path, &device));
            (model, text.join())
        });
        let model = model?;
        let (tokenizer, template, constraints) = text.map_err(|_| EngineError::Tokenizer {
            message: "the tokenizer thread panicked".into(),
        })??;
        let info = ModelInfo {
            path: path.to_path_buf(),
            architecture: model.config().architecture.clone(),
            file_bytes,
            context_length: model.config().context_length,
            vocab_size: model.config().vocab_size,
            load_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        Ok(Self {
            model,
            tokenizer,
            template,
            constraints,
            prefixes: PrefixCache {
                entries: VecDeque::new(),
                capacity: 4,
            },
            info,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Returns the prompt's tokens and, for a chat opening with a system message, the
    /// length of the part that ends with that message: the prefix worth caching.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<(Vec<u32>, Option<usize>)> {
        match prompt {
            Prompt::Text(text) => Ok((self.tokenizer.encode_special(text)?, None)),
            Prompt::Chat(messages) => {
                let tokens = self.template.encode(messages, true, &self.tokenizer)?;
                let prefix = match messages.first() {
                    Some(first) if first.role == Role::System && messages.len() > 1 => {
                        let system = self.template.encode(
                            std::slice::from_ref(first),
                            false,
                            &self.tokenizer,
                        )?;
                        tokens.starts_with(&system).then_some(system.len())
                    }
                    _ => None,
                };
                Ok((tokens, prefix))
            }
        }
    }

    /// Checks a request without running the model: parameters, schema and prompt length.
    pub fn prepare(&self, request: &GenerateRequest) -> Result<Prepared> {
        request.sampling.validate()?;
        if request.max_tokens == 0 {
            return Err(EngineError::InvalidParameter {
                name: "max_tokens",
                message: "must be at least 1".into(),
            });
        }
        let constraint = match &request.schema {
            Some(schema) => Some(self.constraints.json_schema(schema)?),
            None => None,
        };
        let (tokens, prefix_len) = self.encode_prompt(&request.prompt)?;
        let limit = self.info.context_length;
        if tokens.is_empty() {
            return Err(EngineError::InvalidParameter {
                name: "prompt",
                message: "the prompt encodes to no tokens".into(),
            });
        }
        if tokens.len().saturating_add(request.max_tokens) > limit {
            return Err(EngineError::PromptTooLong {
                prompt: tokens.len(),
                requested: request.max_tokens,
                limit,
            });
        }
        Ok(Prepared {
            tokens,
            prefix_len,
            constraint,
            max_tokens: request.max_tokens,
            sampling: request.sampling,
        })
    }

    /// Runs the prompt through the model, reusing and filling the prefix cache, and returns
    /// the cache, the last position's hidden state and how many tokens came from the cache.
    fn run_prompt(
        &mut self,
        tokens: &[u32],
        prefix_len: Option<usize>,
    ) -> Result<(KvCache, Tensor, usize)> {
        let (mut cached, mut cache) = match self.prefixes.longest_prefix(tokens) {
            Some(hit) => hit,
            None => (0, self.model.new_cache()),
        };
        let reused = cached;
        if let Some(prefix_len) = prefix_len.filter(|&len| len > cached && len < tokens.len()) {
            self.model
                .forward_hidden(&tokens[cached..prefix_len], &mut cache)?;
            self.prefixes
                .insert(tokens[..prefix_len].to_vec(), cache.clone());
            cached = prefix_len;
        }
        let hidden = self.model.forward_hidden(&tokens[cached..], &mut cache)?;
        Ok((cache, hidden, reused))
    }

    /// Generates for a prepared request. `cancelled` is polled before each token; when it
    /// returns true the generation stops with [`EngineError::Cancelled`].
    pub fn generate(
        &mut self,
        prepared: Prepared,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Generation> {
        let device = self.model.device().clone();
        device.with_context(|| self.generate_inner(prepared, cancelled))
    }

    fn generate_inner(
        &mut self,
        prepared: Prepared,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Generation> {
        let Prepared {
            tokens,
            prefix_len,
            mut constraint,
            max_tokens,
            sampling,
        } = prepared;
        let mut timings = Timings {
            prompt_tokens: tokens.len(),
            ..Timings::default()
        };
        let started = Instant::now();
        let (mut cache, mut hidden, cached) = self.run_prompt(&tokens, prefix_len)?;
        timings.cached_tokens = cached;
        timings.prompt_ms = started.elapsed().as_secs_f64() * 1000.0;

        let started = Instant::now();
        let mut sampler = Sampler::new(sampling);
        let mut output: Vec<u32> = Vec::new();
        let finish_reason = loop {
            if cancelled() {
                return Err(EngineError::Cancelled);
            }
            if let Some(constraint) = constraint.as_mut() {
                if constraint.is_finished() {
                    break FinishReason::Stop;
                }
                let forced = constraint.take_forced()?;
                if !forced.is_empty() {
                    let room = max_tokens - output.len();
                    let taken = &forced[..forced.len().min(room)];
                    output.extend_from_slice(taken);
                    timings.forced_tokens += taken.len();
                    if output.len() >= max_tokens {
                        break FinishReason::Length;
                    }
                    hidden = self.model.forward_hidden(taken, &mut cache)?;
                    continue;
                }
            }
            if output.len() >= max_tokens {
                break FinishReason::Length;
            }
            let values = match constraint.as_mut() {
                Some(constraint) => self.allowed_logits(&hidden, &constraint.allowed()?)?,
                None => self
                    .model
                    .logits(&hidden)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            };
            let token = sampler
                .sample(&values)
                .ok_or_else(|| EngineError::Constraint {
                    message: "the schema allows no token at this point".into(),
                })?;
            if self.tokenizer.is_end_token(token) {
                break FinishReason::Stop;
            }
            output.push(token);
            if let Some(constraint) = constraint.as_mut() {
                constraint.accept(token)?;
                if constraint.is_finished() {
                    break FinishReason::Stop;
                }
            }
            if output.len() >= max_tokens {
                break FinishReason::Length;
            }
            hidden = self.model.forward_hidden(&[token], &mut cache)?;
        };
        timings.generated_tokens = output.len();
        timings.generate_ms = started.elapsed().as_secs_f64() * 1000.0;

        let text = self.tokenizer.decode(&output)?;
        let json =
            match (&constraint, finish_reason) {
                (Some(_), FinishReason::Stop) => Some(serde_json::from_str(&text).map_err(
                    |e| EngineError::Constraint {
                        message: format!("the constrained output is not valid JSON: {e}"),
                    },
                )?),
                _ => None,
            };
        Ok(Generation {
            text,
            tokens: output,
            finish_reason,
            json,
            timings,
        })
    }
}

impl LoadedModel {
    /// Returns logits over the whole vocabulary with every token that `allowed` excludes at
    /// minus infinity. When few tokens are allowed, as when the schema offers a choice of
    /// enum values, only their logits are computed: the output projection is the largest
    /// matrix of a small model.
    fn allowed_logits(&self, hidden: &Tensor, allowed: &SimpleVob) -> Result<Vec<f32>> {
        let vocab = self.model.config().vocab_size;
        if allowed.num_set() <= vocab / FEW_ALLOWED_DIVISOR {
            let mut ids = Vec::with_capacity(allowed.num_set());
            allowed.iter_set_entries(|i| {
                if i < vocab {
                    ids.push(i);
                }
            });
            if let Some(chosen) = self.model.logits_of(hidden, &ids)? {
                let mut values = vec![f32::NEG_INFINITY; vocab];
                for (&id, value) in ids.iter().zip(chosen) {
                    values[id] = value;
                }
                return Ok(values);
            }
        }
        let mut values = self.model.logits(hidden)?.flatten_all()?.to_vec1::<f32>()?;
        allowed.iter_unset_entries(|i| {
            if let Some(v) = values.get_mut(i) {
                *v = f32::NEG_INFINITY;
            }
        });
        if let Some(beyond) = values.get_mut(allowed.len()..) {
            beyond.fill(f32::NEG_INFINITY);
        }
        Ok(values)
    }
}

/// Only the allowed tokens' logits are computed when at most this fraction of the vocabulary
/// is allowed.
const FEW_ALLOWED_DIVISOR: usize = 8;

/// A checked request, ready for the model.
pub struct Prepared {
    tokens: Vec<u32>,
    prefix_len: Option<usize>,
    constraint: Option<Constraint>,
    max_tokens: usize,
    sampling: Sampling,
}

impl Prepared {
    pub fn prompt_tokens(&self) -> &[u32] {
        &self.tokens
    }
}
