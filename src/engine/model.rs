//! The transformer forward pass for GGUF models of the `qwen2` and `llama` architectures.
//!
//! candle ships both models, but their key-value caches live in private fields, so a prefix
//! cannot be snapshotted and shared. Here the model holds only weights and takes `&self`;
//! the cache is a separate [`KvCache`] value that the caller owns. Cached tensors are never
//! written in place (each step concatenates into new tensors), so cloning a cache is cheap
//! and a clone can never see tokens appended to another.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{D, DType, Device, Module, Tensor};
use std::io::{Read, Seek};
use std::sync::Arc;

use super::attention::causal_attention;
use super::error::{EngineError, Result};
use super::kernels::{Format, QuantMatrix};

/// Architectures this module runs, by their GGUF `general.architecture` name.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["qwen2", "llama"];

/// How rotary position embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs (i, i + d/2): GGUF files of `qwen2` (llama.cpp's NEOX mode).
    Halves,
    /// Pairs (2i, 2i + 1): GGUF files of `llama`, whose converter permutes the q and k rows.
    Interleaved,
}

/// Hyperparameters read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub architecture: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_embd: usize,
    pub context_length: usize,
    pub rms_norm_eps: f32,
    pub rope_base: f32,
    pub rope_style: RopeStyle,
    pub vocab_size: usize,
}

/// Which positions of a forward pass return logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position: the usual case while generating.
    Last,
    /// Every position of the input, in order.
    All,
}

/// The key-value cache of one sequence.
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    /// Returns the number of positions the cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Per layer, keys and values laid out as `(n_kv_head, capacity, head_dim)`, filled up to
/// the cache's length. Room is kept for later positions so that appending one token
/// copies only that token's keys and values.
#[derive(Clone, Default)]
pub(crate) struct LayerCache {
    pub(crate) keys: Vec<f32>,
    pub(crate) values: Vec<f32>,
    pub(crate) capacity: usize,
}

impl LayerCache {
    /// Appends `seq` positions after the first `start`, from `k` and `v` of shape
    /// `(1, n_kv_head, seq, head_dim)`.
    pub(crate) fn append(
        &mut self,
        k: &Tensor,
        v: &Tensor,
        start: usize,
    ) -> candle_core::Result<()> {
        let (_, n_kv_head, seq, head_dim) = k.dims4()?;
        let needed = start + seq;
        if needed > self.capacity {
            let capacity = needed.max(self.capacity * 2).max(64);
            let mut keys = vec![0f32; n_kv_head * capacity * head_dim];
            let mut values = vec![0f32; n_kv_head * capacity * head_dim];
            for head in 0..n_kv_head.min(self.keys.len() / (self.capacity * head_dim).max(1)) {
                let old =
                    head * self.capacity * head_dim..(head * self.capacity + start) * head_dim;
                let new = head * capacity * head_dim;
                keys[new..new + start * head_dim].copy_from_slice(&self.keys[old.clone()]);
                values[new..new + start * head_dim].copy_from_slice(&self.values[old]);
            }
            self.keys = keys;
            self.values = values;
            self.capacity = capacity;
        }
        let capacity = self.capacity;
        let copy = |source: &[f32], target: &mut [f32]| {
            for head in 0..n_kv_head {
                let from = &source[head * seq * head_dim..][..seq * head_dim];
                target[(head * capacity + start) * head_dim..][..seq * head_dim]
                    .copy_from_slice(from);
            }
        };
        with_f32_slice(k, |k| copy(k, &mut self.keys))?;
        with_f32_slice(v, |v| copy(v, &mut self.values))?;
        Ok(())
    }
}

/// Runs `f` on the values of a contiguous f32 tensor on the CPU, without copying them.
pub(crate) fn with_f32_slice<R>(
    tensor: &Tensor,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<R> {
    if !tensor.is_contiguous() {
        candle_core::bail!("expected a contiguous tensor, got {:?}", tensor.layout());
    }
    let (storage, layout) = tensor.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("expected a tensor on the CPU");
    };
    let data = cpu.as_slice::<f32>()?;
    let start = layout.start_offset();
    Ok(f(&data[start..start + tensor.elem_count()]))
}

/// A weight matrix in the layout its quantization type runs fastest in.
enum Weight {
    Candle(QMatMul),
    /// candle runs Q6K with one kernel for a single input row and another for several, and
    /// the two round differently. A single row is therefore sent as two.
    CandleBatchOnly(QMatMul),
    /// Q5_0 and Q8_0, on this crate's kernels.
    Own(QuantMatrix),
}

impl Weight {
    fn new(qt: QTensor) -> candle_core::Result<Self> {
        let format = match qt.dtype() {
            GgmlDType::Q5_0 => Some(Format::Q5_0),
            GgmlDType::Q8_0 => Some(Format::Q8_0),
            _ => None,
        };
        if let Some(format) = format
            && let [rows, cols] = qt.shape().dims()
            && let Some(matrix) = QuantMatrix::new(format, *rows, *cols, &qt.data()?)
        {
            return Ok(Weight::Own(matrix));
        }
        if qt.dtype() == GgmlDType::Q6K && cfg!(target_arch = "x86_64") {
            return Ok(Weight::CandleBatchOnly(QMatMul::from_qtensor(qt)?));
        }
        Ok(Weight::Candle(QMatMul::from_qtensor(qt)?))
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Weight::Candle(weight) => weight.forward(xs),
            Weight::CandleBatchOnly(weight) => {
                let rows = xs.elem_count() / xs.dim(D::Minus1)?;
                if rows != 1 {
                    return weight.forward(xs);
                }
                let doubled = Tensor::cat(&[xs, xs], xs.rank() - 2)?;
                weight.forward(&doubled)?.narrow(xs.rank() - 2, 0, 1)
            }
            Weight::Own(weight) => weight.forward(xs),
        }
    }
}

/// A weight matrix used as `x @ W^T`, with an optional bias.
struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let ys = self.weight.forward(xs)?;
        match &self.bias {
            Some(bias) => ys.broadcast_add(bias),
            None => Ok(ys),
        }
    }
}

/// Matrices applied to the same input, such as the query, key and value projections.
///
/// When every part is on this crate's kernels in one format, they are stacked into one matrix, so one pass over the thread
/// pool and one quantization of the input serve all of them.
enum Projection {
    Stacked {
        weight: QuantMatrix,
        /// Output width of each part, in order.
        widths: Vec<usize>,
        bias: Option<Tensor>,
    },
    Separate(Vec<Linear>),
}

impl Projection {
    fn new(parts: Vec<Linear>) -> candle_core::Result<Self> {
        let all_own = parts.iter().all(|p| matches!(p.weight, Weight::Own(_)));
        let biases = parts.iter().filter(|p| p.bias.is_some()).count();
        if !all_own || (biases != 0 && biases != parts.len()) {
            return Ok(Projection::Separate(parts));
        }
        let matrices: Vec<&QuantMatrix> = parts
            .iter()
            .filter_map(|p| match &p.weight {
                Weight::Own(m) => Some(m),
                _ => None,
            })
            .collect();
        let Some(weight) = QuantMatrix::stack(&matrices) else {
            return Ok(Projection::Separate(parts));
        };
        let widths = matrices.iter().map(|m| m.rows()).collect();
        let bias = if biases == 0 {
            None
        } else {
            let parts: Vec<&Tensor> = parts.iter().filter_map(|p| p.bias.as_ref()).collect();
            Some(Tensor::cat(&parts, 0)?)
        };
        Ok(Projection::Stacked {
            weight,
            widths,
            bias,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        match self {
            Projection::Separate(parts) => parts.iter().map(|p| p.forward(xs)).collect(),
            Projection::Stacked {
                weight,
                widths,
                bias,
            } => {
                let mut ys = weight.forward(xs)?;
                if let Some(bias) = bias {
                    ys = ys.broadcast_add(bias)?;
                }
                let last = ys.rank() - 1;
                let mut offset = 0;
                let mut outputs = Vec::with_capacity(widths.len());
                for &width in widths {
                    outputs.push(ys.narrow(last, offset, width)?);
                    offset += width;
                }
                Ok(outputs)
            }
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    /// Query, key and value projections.
    qkv: Projection,
    wo: Linear,
    ffn_norm: Tensor,
    /// Gate and up projections of the feed-forward block.
    gate_up: Projection,
    down: Linear,
}

/// Weights of a decoder-only transformer, shared read-only by every sequence.
pub struct Model {
    config: ModelConfig,
    embeddings: Arc<QTensor>,
    layers: Vec<Layer>,
    output_norm: Tensor,
    output: Weight,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

struct GgufReader<'a, R> {
    content: &'a gguf_file::Content,
    reader: &'a mut R,
    device: &'a Device,
    path: &'a std::path::Path,
}

impl<R: Read + Seek> GgufReader<'_, R> {
    fn invalid(&self, message: String) -> EngineError {
        EngineError::InvalidGguf {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn metadata(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| self.invalid(format!("missing metadata key `{key}`")))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let value = self.metadata(key)?;
        value
            .to_u32()
            .map(|v| v as usize)
            .or_else(|_| value.to_u64().map(|v| v as usize))
            .map_err(|_| self.invalid(format!("metadata key `{key}` is not an integer")))
    }

    fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(value) => value
                .to_f32()
                .map_err(|_| self.invalid(format!("metadata key `{key}` is not a number"))),
        }
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(self.invalid(format!("missing tensor `{name}`")));
        }
        self.content
            .tensor(self.reader, name, self.device)
            .map_err(|e| self.invalid(format!("cannot read tensor `{name}`: {e}")))
    }

    fn dense(&mut self, name: &str) -> Result<Tensor> {
        let qt = self.qtensor(name)?;
        Ok(qt.dequantize(self.device)?)
    }

    fn matmul(&mut self, name: &str) -> Result<Weight> {
        Ok(Weight::new(self.qtensor(name)?)?)
    }

    fn linear(&mut self, name: &str, bias: Option<&str>) -> Result<Linear> {
        let weight = self.matmul(name)?;
        let bias = match bias {
            Some(bias) if self.has_tensor(bias) => Some(self.dense(bias)?),
            _ => None,
        };
        Ok(Linear { weight, bias })
    }
}

fn read_config<R: Read + Seek>(
    gguf: &GgufReader<'_, R>,
    architecture: &str,
) -> Result<ModelConfig> {
    let key = |name: &str| format!("{architecture}.{name}");
    let n_head = gguf.usize(&key("attention.head_count"))?;
    let n_embd = gguf.usize(&key("embedding_length"))?;
    let n_kv_head = gguf
        .usize(&key("attention.head_count_kv"))
        .unwrap_or(n_head);
    let head_dim = gguf
        .usize(&key("attention.key_length"))
        .unwrap_or(n_embd / n_head.max(1));
    if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
        return Err(gguf.invalid(format!(
            "head counts {n_head} and {n_kv_head} do not divide evenly"
        )));
    }
    let rope_style = match architecture {
        "qwen2" => RopeStyle::Halves,
        _ => RopeStyle::Interleaved,
    };
    let embd_dims = gguf
        .content
        .tensor_infos
        .get("token_embd.weight")
        .map(|info| info.shape.dims().to_vec())
        .ok_or_else(|| gguf.invalid("missing tensor `token_embd.weight`".into()))?;
    Ok(ModelConfig {
        architecture: architecture.to_string(),
        n_layer: gguf.usize(&key("block_count"))?,
        n_head,
        n_kv_head,
        head_dim,
        n_embd,
        context_length: gguf.usize(&key("context_length"))?,
        rms_norm_eps: gguf.f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-6)?,
        rope_base: gguf.f32_or(&key("rope.freq_base"), 10_000.0)?,
        rope_style,
        vocab_size: embd_dims[0],
    })
}

/// Tables of cos and sin of shape `(positions, head_dim / 2)`.
fn rope_tables(config: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = config.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            1.0 / config
                .rope_base
                .powf(2.0 * i as f32 / config.head_dim as f32)
        })
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0u32, config.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((config.context_length, 1))?;
    let angles = positions.matmul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

impl Model {
    /// Loads the weights of a `qwen2` or `llama` GGUF file, reading each tensor once.
    ///
    /// # Errors
    /// [`EngineError::UnsupportedArchitecture`] for any other `general.architecture`, and
    /// [`EngineError::InvalidGguf`] naming the missing key or tensor.
    pub fn load<R: Read + Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        path: &std::path::Path,
        device: &Device,
    ) -> Result<Self> {
        let mut gguf = GgufReader {
            content,
            reader,
            device,
            path,
        };
        let architecture = gguf
            .metadata("general.architecture")?
            .to_string()
            .map_err(|_| gguf.invalid("`general.architecture` is not a string".into()))?
            .clone();
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(EngineError::UnsupportedArchitecture { architecture });
        }
        let config = read_config(&gguf, &architecture)?;
        let mut dtypes: std::collections::BTreeMap<String, usize> = Default::default();
        for info in content.tensor_infos.values() {
            *dtypes.entry(format!("{:?}", info.ggml_dtype)).or_default() += info.shape.elem_count();
        }
        tracing::debug!(?dtypes, "weights per quantization type");

        let embeddings = Arc::new(gguf.qtensor("token_embd.weight")?);
        let output = if gguf.has_tensor("output.weight") {
            gguf.matmul("output.weight")?
        } else {
            // Tied embeddings: the output projection reuses the embedding matrix.
            Weight::new(gguf.qtensor("token_embd.weight")?)?
        };
        let output_norm = gguf.dense("output_norm.weight")?;

        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let name = |suffix: &str| format!("blk.{i}.{suffix}");
            layers.push(Layer {
                attn_norm: gguf.dense(&name("attn_norm.weight"))?,
                qkv: Projection::new(vec![
                    gguf.linear(&name("attn_q.weight"), Some(&name("attn_q.bias")))?,
                    gguf.linear(&name("attn_k.weight"), Some(&name("attn_k.bias")))?,
                    gguf.linear(&name("attn_v.weight"), Some(&name("attn_v.bias")))?,
                ])?,
                wo: gguf.linear(&name("attn_output.weight"), None)?,
                ffn_norm: gguf.dense(&name("ffn_norm.weight"))?,
                gate_up: Projection::new(vec![
                    gguf.linear(&name("ffn_gate.weight"), None)?,
                    gguf.linear(&name("ffn_up.weight"), None)?,
                ])?,
                down: gguf.linear(&name("ffn_down.weight"), None)?,
            });
        }
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Self {
            config,
            embeddings,
            layers,
            output_norm,
            output,
            cos,
            sin,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Creates an empty cache for a new sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![LayerCache::default(); self.layers.len()],
            len: 0,
        }
    }

    /// Runs `tokens` after the positions already in `cache`, appends their keys and values
    /// to it, and returns logits of shape `(1, vocab)` for [`Logits::Last`] or
    /// `(tokens.len(), vocab)` for [`Logits::All`].
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> Result<Tensor> {
        let hidden = self.hidden(tokens, cache, logits)?;
        self.logits(&hidden)
    }

    /// Like [`Model::forward`] with [`Logits::Last`], but stops before the output projection:
    /// returns the normalized hidden state of the last position, shape `(1, n_embd)`, for
    /// [`Model::logits`] or [`Model::logits_of`].
    pub fn forward_hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        self.hidden(tokens, cache, Logits::Last)
    }

    /// Projects hidden states from [`Model::forward_hidden`] to logits over the vocabulary.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.output.forward(&hidden.squeeze(0)?)?)
    }

    /// Returns the logits of the tokens `ids` only, in that order, for a hidden state of one
    /// position, or `None` when the output projection cannot compute a subset (its weights
    /// are on candle's kernels). Each value equals the one [`Model::logits`] gives.
    pub fn logits_of(&self, hidden: &Tensor, ids: &[usize]) -> Result<Option<Vec<f32>>> {
        let Weight::Own(output) = &self.output else {
            return Ok(None);
        };
        let values = with_f32_slice(&hidden.contiguous()?, |x| output.forward_rows(x, ids))??;
        Ok(Some(values))
    }

    fn hidden(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> Result<Tensor> {
        let seq_len = tokens.len();
        let start = cache.len;
        if seq_len == 0 {
            return Err(EngineError::InvalidParameter {
                name: "tokens",
                message: "a forward pass needs at least one token".into(),
            });
        }
        if start + seq_len > self.config.context_length {
            return Err(EngineError::PromptTooLong {
                prompt: start + seq_len,
                requested: 0,
                limit: self.config.context_length,
            });
        }
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![LayerCache::default(); self.layers.len()];
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let mut xs = self.embeddings.embedding(&ids)?.unsqueeze(0)?;
        let cos = self.cos.narrow(0, start, seq_len)?;
        let sin = self.sin.narrow(0, start, seq_len)?;
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            xs = self.layer_forward(layer, &xs, slot, start, &cos, &sin)?;
        }
        cache.len += seq_len;

        let xs = match logits {
            Logits::Last => xs.narrow(1, seq_len - 1, 1)?,
            Logits::All => xs,
        };
        Ok(candle_nn::ops::rms_norm(
            &xs,
            &self.output_norm,
            self.config.rms_norm_eps,
        )?)
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        xs: &Tensor,
        cache: &mut LayerCache,
        start: usize,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (_, seq_len, _) = xs.dims3()?;
        let hidden = candle_nn::ops::rms_norm(xs, &layer.attn_norm, cfg.rms_norm_eps)?;

        let heads = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
            t.reshape((1, seq_len, n, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let [q, k, v]: [Tensor; 3] = layer
            .qkv
            .forward(&hidden)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("expected three projections".into()))?;
        let q = heads(q, cfg.n_head)?;
        let k = heads(k, cfg.n_kv_head)?;
        let v = heads(v, cfg.n_kv_head)?;
        let (q, k) = match cfg.rope_style {
            RopeStyle::Halves => (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            ),
            RopeStyle::Interleaved => (
                candle_nn::rotary_emb::rope_i(&q, cos, sin)?,
                candle_nn::rotary_emb::rope_i(&k, cos, sin)?,
            ),
        };
        cache.append(&k, &v.contiguous()?, start)?;
        let attn = causal_attention(&q, cache, cfg.n_kv_head, start + seq_len)?;
        let xs = (layer.wo.forward(&attn)? + xs)?;

        let hidden = candle_nn::ops::rms_norm(&xs, &layer.ffn_norm, cfg.rms_norm_eps)?;
        let [gate, up]: [Tensor; 2] = layer
            .gate_up
            .forward(&hidden)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("expected two projections".into()))?;
        let gate = candle_nn::ops::silu(&gate)?;
        let ffn = layer.down.forward(&(gate * up)?)?;
        Ok((ffn + xs)?)
    }
}

/// Returns the index of the largest value of a `(1, vocab)` or `(vocab,)` logits tensor.
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits
        .flatten_all()?
        .argmax(D::Minus1)?
        .to_scalar::<u32>()?)
}
