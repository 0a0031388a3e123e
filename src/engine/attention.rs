//! Causal attention whose result for a query row does not depend on how many rows are
//! computed with it.
//!
//! A general matrix multiply picks its blocking, and so its order of additions, from the
//! shapes it is given. The model then computes position 17 slightly differently in a batch
//! of 20 tokens than in a batch of 65. The 8-bit activation rounding of the following
//! layers turns such last-bit differences into logits that differ by tenths, so a prompt
//! continued from the prefix cache would not give the logits of the whole prompt. Here
//! every query row is computed on its own, with the same order of additions for any batch.

use candle_core::{Device, Tensor};

use super::model::{LayerCache, with_f32_slice};

/// Lanes summed separately in a dot product: fixed, so the order of additions is fixed.
const LANES: usize = 8;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut a_chunks = a.chunks_exact(LANES);
    let mut b_chunks = b.chunks_exact(LANES);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for i in 0..LANES {
            lanes[i] = x[i].mul_add(y[i], lanes[i]);
        }
    }
    let mut sum = 0f32;
    for (x, y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
        sum = x.mul_add(*y, sum);
    }
    lanes.iter().sum::<f32>() + sum
}

/// Attention of `q` `(1, n_head, seq, head_dim)` over the first `total` positions of
/// `cache`, where the `seq` queries are the last `seq` of the `total` positions and each
/// attends to the positions up to its own. Query head `h` uses key-value head
/// `h / (n_head / n_kv_head)`. Returns `(1, seq, n_head * head_dim)`.
pub(crate) fn causal_attention(
    q: &Tensor,
    cache: &LayerCache,
    n_kv_head: usize,
    total: usize,
) -> candle_core::Result<Tensor> {
    let (_, n_head, seq, head_dim) = q.dims4()?;
    let capacity = cache.capacity;
    if n_head % n_kv_head != 0
        || total < seq
        || total > capacity
        || cache.keys.len() < n_kv_head * capacity * head_dim
    {
        candle_core::bail!(
            "attention shapes do not fit: q {:?}, {n_kv_head} key-value heads, {total} of \
             {capacity} positions",
            q.dims()
        );
    }
    let group = n_head / n_kv_head;
    let start = total - seq;
    with_f32_slice(q, |q| {
        attend(q, cache, (n_head, group, seq, head_dim), start)
    })?
}

fn attend(
    q: &[f32],
    cache: &LayerCache,
    (n_head, group, seq, head_dim): (usize, usize, usize, usize),
    start: usize,
) -> candle_core::Result<Tensor> {
    let total = start + seq;
    let head_stride = cache.capacity * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();

    // Output laid out as (seq, n_head, head_dim), ready for the output projection.
    let mut out = vec![0f32; seq * n_head * head_dim];
    let out_ptr = out.as_mut_ptr() as usize;
    let pool = candle_core::utils::barrier_pool();
    pool.execute_chunked(n_head * seq, |items| {
        let mut scores = vec![0f32; total];
        let mut acc = vec![0f32; head_dim];
        for item in items {
            let (head, row) = (item / seq, item % seq);
            let kv_head = head / group;
            let query = &q[(head * seq + row) * head_dim..][..head_dim];
            let keys = &cache.keys[kv_head * head_stride..][..total * head_dim];
            let values = &cache.values[kv_head * head_stride..][..total * head_dim];
            let visible = start + row + 1;
            let mut max = f32::NEG_INFINITY;
            for (j, score) in scores[..visible].iter_mut().enumerate() {
                *score = dot(query, &keys[j * head_dim..][..head_dim]) * scale;
                max = max.max(*score);
            }
            let mut sum = 0f32;
            for score in &mut scores[..visible] {
                *score = (*score - max).exp();
                sum += *score;
            }
            acc.fill(0.0);
            for (j, &weight) in scores[..visible].iter().enumerate() {
                let value = &values[j * head_dim..][..head_dim];
                for (a, &x) in acc.iter_mut().zip(value) {
                    *a = weight.mul_add(x, *a);
                }
            }
            // SAFETY: item (head, row) owns the head_dim outputs at (row, head), and each
            // item goes to exactly one worker, so no two workers write the same element.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(
                    (out_ptr as *mut f32).add((row * n_head + head) * head_dim),
                    head_dim,
                )
            };
            let inverse = 1.0 / sum;
            for (d, a) in dst.iter_mut().zip(&acc) {
                *d = a * inverse;
            }
        }
    });
    Tensor::from_vec(out, (1, seq, n_head * head_dim), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(shape: (usize, usize, usize, usize), seed: u32) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// Plain softmax attention with candle's ops, for comparison.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Vec<f32> {
        let (_, n_head, seq, head_dim) = q.dims4().unwrap();
        let (_, n_kv, total, _) = k.dims4().unwrap();
        let group = n_head / n_kv;
        let start = total - seq;
        let mut rows = vec![0f32; seq * n_head * head_dim];
        for h in 0..n_head {
            let qh = q
                .narrow(1, h, 1)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let kh = k
                .narrow(1, h / group, 1)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let vh = v
                .narrow(1, h / group, 1)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let scores = (qh.matmul(&kh.t().unwrap()).unwrap() / (head_dim as f64).sqrt())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let vh = vh.to_vec2::<f32>().unwrap();
            for (r, row) in scores.iter().enumerate() {
                let visible = &row[..start + r + 1];
                let max = visible.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let weights: Vec<f32> = visible.iter().map(|s| (s - max).exp()).collect();
                let sum: f32 = weights.iter().sum();
                for d in 0..head_dim {
                    let value: f32 = weights.iter().zip(&vh).map(|(w, vr)| w * vr[d]).sum();
                    rows[(r * n_head + h) * head_dim + d] = value / sum;
                }
            }
        }
        rows
    }

    /// A cache holding the first `end` positions of `k` and `v`, filled in two appends.
    fn cache_of(k: &Tensor, v: &Tensor, end: usize) -> LayerCache {
        let mut cache = LayerCache::default();
        let first = end / 2;
        for (from, len) in [(0, first), (first, end - first)] {
            if len == 0 {
                continue;
            }
            let part = |t: &Tensor| t.narrow(2, from, len).unwrap().contiguous().unwrap();
            cache.append(&part(k), &part(v), from).unwrap();
        }
        cache
    }

    #[test]
    fn matches_plain_softmax_attention() {
        let q = random((1, 6, 5, 16), 1);
        let k = random((1, 2, 9, 16), 2);
        let v = random((1, 2, 9, 16), 3);
        let cache = cache_of(&k, &v, 9);
        let ours = causal_attention(&q, &cache, 2, 9).unwrap();
        let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(reference(&q, &k, &v)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn a_row_is_the_same_in_any_batch() {
        let (n_head, n_kv, head_dim, total) = (4, 2, 32, 23);
        let q = random((1, n_head, total, head_dim), 4);
        let k = random((1, n_kv, total, head_dim), 5);
        let v = random((1, n_kv, total, head_dim), 6);
        let whole = causal_attention(&q, &cache_of(&k, &v, total), n_kv, total).unwrap();
        let whole = whole.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        for len in [1, 2, 7, 16, total] {
            // The last `len` queries over the first `end` positions.
            for end in [len, total] {
                let first = end - len;
                let qs = q.narrow(2, first, len).unwrap().contiguous().unwrap();
                let cache = cache_of(&k, &v, end);
                let part = causal_attention(&qs, &cache, n_kv, end).unwrap();
                let part = part.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
                for (i, row) in part.iter().enumerate() {
                    assert_eq!(row, &whole[first + i], "len {len}, end {end}, row {i}");
                }
            }
        }
    }
}
