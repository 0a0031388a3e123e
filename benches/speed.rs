//! Prompt and generation speed of leadgate's engine against llama.cpp, in one run.
//!
//! Both sides process the same 512 fixed token ids as one prompt batch, then generate 128
//! tokens one forward pass at a time, on the same GGUF file with the same thread count.
//! The peer is `../shared/bench/peer_llamacpp.py speed` (llama-cpp-python). Machines are
//! shared and noisy, so only the ratios printed at the end mean much.
//!
//! Run with `cargo bench --bench speed`. Settings come from the environment:
//! `LEADGATE_BENCH_MODEL` (a model name or path; default the default model),
//! `LEADGATE_BENCH_THREADS` (default: the number of cores), `LEADGATE_PEER_SCRIPT` (path of
//! the peer script; default `../shared/bench/peer_llamacpp.py` beside the repository).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use leadgate::engine::model::Logits;
use leadgate::engine::{self, LoadedModel};
use leadgate::models;

const PROMPT_TOKENS: usize = 512;
const GEN_TOKENS: usize = 128;

/// Speeds in tokens per second.
struct Speeds {
    prompt: f64,
    generation: f64,
}

fn measure_leadgate(model: &LoadedModel) -> anyhow::Result<Speeds> {
    // The same ids as the peer script: spread over the vocabulary, no special tokens.
    let prompt: Vec<u32> = (0..PROMPT_TOKENS)
        .map(|i| 100 + (i as u32 * 7919) % 20_000)
        .collect();
    let net = model.model();
    net.device().with_context(|| -> anyhow::Result<Speeds> {
        let mut warmup = net.new_cache();
        net.forward(&prompt[..16], &mut warmup, Logits::Last)?;
        net.forward(&[42], &mut warmup, Logits::Last)?;

        let mut cache = net.new_cache();
        let started = Instant::now();
        net.forward(&prompt, &mut cache, Logits::Last)?;
        let prompt_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        for _ in 0..GEN_TOKENS {
            net.forward(&[42], &mut cache, Logits::Last)?;
        }
        let gen_seconds = started.elapsed().as_secs_f64();
        Ok(Speeds {
            prompt: PROMPT_TOKENS as f64 / prompt_seconds,
            generation: GEN_TOKENS as f64 / gen_seconds,
        })
    })
}

fn measure_peer(script: &Path, model: &Path, threads: usize) -> anyhow::Result<Speeds> {
    let output = Command::new("python3")
        .arg(script)
        .arg("speed")
        .arg(model)
        .args(["--threads", &threads.to_string()])
        .args(["--prompt-tokens", &PROMPT_TOKENS.to_string()])
        .args(["--gen-tokens", &GEN_TOKENS.to_string()])
        .output()?;
    if !output.status.success() {
        anyhow::bail!(
            "the peer script failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(last)?;
    let field = |name: &str| {
        result[name]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("the peer's output has no number `{name}`"))
    };
    Ok(Speeds {
        prompt: field("prompt_tokens_per_second")?,
        generation: field("gen_tokens_per_second")?,
    })
}

fn main() -> anyhow::Result<()> {
    let threads = std::env::var("LEADGATE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // SAFETY: the command line is parsed on the main thread before any thread starts.
    unsafe { engine::set_threads(threads) };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name =
        std::env::var("LEADGATE_BENCH_MODEL").unwrap_or_else(|_| models::DEFAULT_MODEL.into());
    let path = models::resolve(&name, &manifest.join("models"))?;
    let script = std::env::var_os("LEADGATE_PEER_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../shared/bench/peer_llamacpp.py"));

    let started = Instant::now();
    let model = LoadedModel::load(&path)?;
    let load_seconds = started.elapsed().as_secs_f64();
    println!(
        "model {} ({}), {threads} threads, {PROMPT_TOKENS}-token prompt, {GEN_TOKENS} generated",
        path.display(),
        model.info().architecture
    );
    println!("leadgate load: {load_seconds:.2} s");
    let ours = measure_leadgate(&model)?;
    drop(model);
    println!(
        "leadgate:  prompt {:8.1} tokens/s   generation {:7.1} tokens/s",
        ours.prompt, ours.generation
    );
    match measure_peer(&script, &path, threads) {
        Ok(peer) => {
            println!(
                "llama.cpp: prompt {:8.1} tokens/s   generation {:7.1} tokens/s",
                peer.prompt, peer.generation
            );
            println!(
                "ratio (leadgate / llama.cpp): prompt {:.2}x   generation {:.2}x",
                ours.prompt / peer.prompt,
                ours.generation / peer.generation
            );
        }
        Err(error) => {
            println!("llama.cpp: not measured: {error:#}");
            println!("install the peer with ../shared/bench/install-peer.sh to get ratios");
        }
    }
    Ok(())
}
