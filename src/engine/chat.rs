//! Chat prompts: the model's own Jinja chat template rendered with minijinja, ChatML when
//! the file has none, and tokenization that keeps message text apart from control tokens.

use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};
use super::tokenizer::TextTokenizer;

/// The template used when a GGUF file carries no `tokenizer.chat_template`.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}\
{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Marks the start and end of a message's text in a rendered template. These are
/// private-use characters, which Jinja filters leave alone.
const MARK_OPEN: char = '\u{F8F0}';
const MARK_CLOSE: char = '\u{F8F1}';

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl std::fmt::Debug for ChatMessage {
    // Message text may be a client's words, so Debug shows only its length.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatMessage")
            .field("role", &self.role)
            .field("content_bytes", &self.content.len())
            .finish()
    }
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
}

pub struct ChatTemplate {
    env: Environment<'static>,
}

fn template_error(e: minijinja::Error) -> EngineError {
    EngineError::ChatTemplate {
        message: e.to_string(),
    }
}

impl ChatTemplate {
    /// Compiles `source`, or ChatML when it is `None`.
    pub fn new(source: Option<&str>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", source.unwrap_or(CHATML_TEMPLATE).to_string())
            .map_err(template_error)?;
        Ok(Self { env })
    }

    /// Renders `messages` with their texts replaced by marks, and returns the pieces:
    /// template text and the index of the message whose text goes between them.
    fn render_marked(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tokenizer: &TextTokenizer,
    ) -> Result<String> {
        let marked: Vec<_> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                context! {
                    role => m.role.as_str(),
                    content => format!("{MARK_OPEN}{i}{MARK_CLOSE}"),
                }
            })
            .collect();
        let template = self.env.get_template("chat").map_err(template_error)?;
        template
            .render(context! {
                messages => marked,
                add_generation_prompt => add_generation_prompt,
                bos_token => tokenizer.bos_token().unwrap_or(""),
                eos_token => tokenizer.eos_token().unwrap_or(""),
            })
            .map_err(template_error)
    }

    /// Renders and tokenizes a conversation. Template text is encoded with control tokens;
    /// each message's text is encoded as plain text, so `<|im_end|>` typed by a client stays
    /// ordinary characters.
    pub fn encode(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tokenizer: &TextTokenizer,
    ) -> Result<Vec<u32>> {
        let rendered = self.render_marked(messages, add_generation_prompt, tokenizer)?;
        let mut ids = Vec::new();
        let mut rest = rendered.as_str();
        while let Some(open) = rest.find(MARK_OPEN) {
            ids.extend(tokenizer.encode_special(&rest[..open])?);
            let after_open = &rest[open + MARK_OPEN.len_utf8()..];
            let close = after_open
                .find(MARK_CLOSE)
                .ok_or_else(|| EngineError::ChatTemplate {
                    message: "the template cut a message's text".into(),
                })?;
            let index: usize =
                after_open[..close]
                    .parse()
                    .map_err(|_| EngineError::ChatTemplate {
                        message: "the template changed a message's text".into(),
                    })?;
            let message = messages
                .get(index)
                .ok_or_else(|| EngineError::ChatTemplate {
                    message: "the template referred to a message that does not exist".into(),
                })?;
            ids.extend(tokenizer.encode_plain(&message.content)?);
            rest = &after_open[close + MARK_CLOSE.len_utf8()..];
        }
        ids.extend(tokenizer.encode_special(rest)?);
        Ok(ids)
    }
}
