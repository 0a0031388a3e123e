//! Choosing the next token from logits: greedy, or temperature with nucleus (top-p)
//! sampling from a seeded generator so a run can be repeated.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token; the output depends only on the prompt.
    #[default]
    Greedy,
    /// Sample among the most likely tokens whose probabilities add up to `top_p`, after
    /// dividing logits by `temperature`.
    TopP {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

impl Sampling {
    /// Checks the parameters: temperature in (0, 10], top_p in (0, 1].
    pub fn validate(&self) -> Result<()> {
        if let Sampling::TopP {
            temperature, top_p, ..
        } = *self
        {
            if !(temperature > 0.0 && temperature <= 10.0) {
                return Err(EngineError::InvalidParameter {
                    name: "temperature",
                    message: format!("must be > 0 and <= 10, got {temperature}"),
                });
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(EngineError::InvalidParameter {
                    name: "top_p",
                    message: format!("must be > 0 and <= 1, got {top_p}"),
                });
            }
        }
        Ok(())
    }
}

/// The sampler of one generation.
pub struct Sampler {
    sampling: Sampling,
    rng: Option<StdRng>,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Self {
        let rng = match sampling {
            Sampling::TopP { seed, .. } => Some(StdRng::seed_from_u64(seed)),
            Sampling::Greedy => None,
        };
        Self { sampling, rng }
    }

    /// Picks a token from `logits`; entries set to negative infinity are never picked.
    /// Returns `None` when every entry is negative infinity.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        match (self.sampling, self.rng.as_mut()) {
            (
                Sampling::TopP {
                    temperature, top_p, ..
                },
                Some(rng),
            ) => sample_top_p(logits, temperature, top_p, rng),
            _ => argmax(logits),
        }
    }
}

fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &value) in logits.iter().enumerate() {
        if value == f32::NEG_INFINITY || value.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| value > b) {
            best = Some((i, value));
        }
    }
    best.map(|(i, _)| i as u32)
}

fn sample_top_p(logits: &[f32], temperature: f32, top_p: f32, rng: &mut StdRng) -> Option<u32> {
    let max = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return None;
    }
    let mut candidates: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, &v)| (i as u32, ((v - max) / temperature).exp()))
        .collect();
    candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    let total: f32 = candidates.iter().map(|c| c.1).sum();
    let mut kept = 0.0;
    let mut cut = candidates.len();
    for (i, c) in candidates.iter().enumerate() {
        kept += c.1 / total;
        if kept >= top_p {
            cut = i + 1;
            break;
        }
    }
    candidates.truncate(cut);
    let kept_total: f32 = candidates.iter().map(|c| c.1).sum();
    let mut target = rng.random::<f32>() * kept_total;
    for (id, weight) in &candidates {
        target -= weight;
        if target <= 0.0 {
            return Some(*id);
        }
    }
    candidates.last().map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_skips_masked_entries() {
        let logits = [1.0, f32::NEG_INFINITY, 0.5];
        assert_eq!(Sampler::new(Sampling::Greedy).sample(&logits), Some(0));
        let all_masked = [f32::NEG_INFINITY; 3];
        assert_eq!(Sampler::new(Sampling::Greedy).sample(&all_masked), None);
    }

    #[test]
    fn top_p_is_repeatable_with_a_seed() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let sampling = Sampling::TopP {
            temperature: 0.8,
            top_p: 0.9,
            seed: 7,
        };
        let run = || {
            let mut sampler = Sampler::new(sampling);
            (0..20).map(|_| sampler.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn top_p_never_picks_masked_tokens() {
        let mut logits = vec![f32::NEG_INFINITY; 10];
        logits[3] = 0.0;
        logits[8] = 0.1;
        let mut sampler = Sampler::new(Sampling::TopP {
            temperature: 1.0,
            top_p: 1.0,
            seed: 1,
        });
        for _ in 0..100 {
            let token = sampler.sample(&logits).unwrap();
            assert!(token == 3 || token == 8, "picked masked token {token}");
        }
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        let bad = Sampling::TopP {
            temperature: 0.0,
            top_p: 0.9,
            seed: 0,
        };
        assert!(matches!(
            bad.validate(),
            Err(EngineError::InvalidParameter {
                name: "temperature",
                ..
            })
        ));
    }
}
