//! A matrix multiply for Q5_0 weights, which candle 0.11 runs with scalar code on x86.
//!
//! Activations are quantized to Q8_0 blocks (32 values and one f16 scale, as llama.cpp
//! does), and each weight row is multiplied with AVX2 integer instructions. Every (weight
//! row, activation row) pair keeps its own accumulator and adds its blocks in the same
//! order whatever the number of activation rows, so one token and a batch of tokens get
//! bit-identical results. That keeps a cached prompt prefix exact: appending tokens to it
//! gives the logits that processing the whole sequence at once gives.
//!
//! Weights stay in their 22-byte Q5_0 blocks, which matters for generation, where reading
//! the weights from memory is most of the work.

use candle_core::{Device, Tensor};
use half::f16;

pub const BLOCK: usize = 32;
const Q5_0_BYTES: usize = 22;

/// Activation rows processed together against one weight row; each decoded weight block is
/// reused this many times.
const ROW_TILE: usize = 8;

/// One block of quantized activations.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ8 {
    scale: f32,
    values: [i8; BLOCK],
}

/// A weight matrix of shape `(rows, cols)` in Q5_0 blocks, used as `x @ W^T`.
pub struct Q5_0Matrix {
    rows: usize,
    cols: usize,
    blocks: Vec<u8>,
}

impl Q5_0Matrix {
    /// Wraps raw Q5_0 data of a `(rows, cols)` matrix; `cols` must be a multiple of 32.
    pub fn new(rows: usize, cols: usize, blocks: Vec<u8>) -> Option<Self> {
        let expected = rows * (cols / BLOCK) * Q5_0_BYTES;
        (cols.is_multiple_of(BLOCK) && blocks.len() == expected).then_some(Self {
            rows,
            cols,
            blocks,
        })
    }

    /// Stacks matrices of the same width into one, rows in the order given.
    pub fn stack(parts: &[&Q5_0Matrix]) -> Option<Self> {
        let cols = parts.first()?.cols;
        if parts.iter().any(|p| p.cols != cols) {
            return None;
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let blocks = parts
            .iter()
            .flat_map(|p| p.blocks.iter().copied())
            .collect();
        Self::new(rows, cols, blocks)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    fn row(&self, index: usize) -> &[u8] {
        let row_bytes = self.cols / BLOCK * Q5_0_BYTES;
        &self.blocks[index * row_bytes..(index + 1) * row_bytes]
    }

    /// Computes `xs @ W^T` for `xs` of shape `(..., cols)`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dims = xs.dims().to_vec();
        let Some((&cols, batch_dims)) = dims.split_last() else {
            candle_core::bail!("a Q5_0 matmul needs an input with at least one dimension");
        };
        if cols != self.cols {
            candle_core::bail!(
                "input width {cols} does not match the weight's {}",
                self.cols
            );
        }
        let input = xs.flatten_all()?.to_vec1::<f32>()?;
        let m = input.len() / cols;
        let activations: Vec<BlockQ8> = input.chunks_exact(BLOCK).map(quantize_block).collect();
        let blocks_per_row = cols / BLOCK;

        // Column-major result: one contiguous run of `m` outputs per weight row.
        let mut by_weight_row = vec![0f32; self.rows * m];
        let out_ptr = by_weight_row.as_mut_ptr() as usize;
        let pool = candle_core::utils::barrier_pool();
        pool.execute_chunked(self.rows, |range| {
            for row in range {
                // SAFETY: each weight row owns the `m` outputs at `row * m`, and every row is
                // handed to exactly one worker, so no two workers write the same element.
                let out = unsafe {
                    std::slice::from_raw_parts_mut((out_ptr as *mut f32).add(row * m), m)
                };
                let weights = self.row(row);
                for (tile, out_tile) in out.chunks_mut(ROW_TILE).enumerate() {
                    let first = tile * ROW_TILE * blocks_per_row;
                    let acts = &activations[first..first + out_tile.len() * blocks_per_row];
                    dot_rows(weights, acts, blocks_per_row, out_tile);
                }
            }
        });

        let mut output = vec![0f32; m * self.rows];
        for (row, values) in by_weight_row.chunks_exact(m).enumerate() {
            for (i, &value) in values.iter().enumerate() {
                output[i * self.rows + row] = value;
            }
        }
        let mut out_dims = batch_dims.to_vec();
        out_dims.push(self.rows);
        Tensor::from_vec(output, out_dims, &Device::Cpu)
    }
}

/// Quantizes 32 values to signed bytes with one scale, rounding half away from zero like
/// llama.cpp's reference `quantize_row_q8_0`. The scale is kept as the f16 that llama.cpp
/// stores, widened back to f32.
fn quantize_block(values: &[f32]) -> BlockQ8 {
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = max / 127.0;
    let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    let mut quantized = [0i8; BLOCK];
    for (q, v) in quantized.iter_mut().zip(values) {
        *q = (v * inverse).round() as i8;
    }
    BlockQ8 {
        scale: f16::from_f32(scale).to_f32(),
        values: quantized,
    }
}

/// Multiplies one Q5_0 weight row by `out.len()` activation rows.
fn dot_rows(weights: &[u8], acts: &[BlockQ8], blocks: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe { avx2::dot_rows(weights, acts, blocks, out) };
            return;
        }
    }
    dot_rows_scalar(weights, acts, blocks, out);
}

/// Decodes one Q5_0 block into its scale and 32 integers in -16..=15.
fn decode_block(block: &[u8]) -> (f32, [i8; BLOCK]) {
    let scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
    let high = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    let mut values = [0i8; BLOCK];
    for (j, &byte) in block[6..Q5_0_BYTES].iter().enumerate() {
        let low = (byte & 0x0F) | ((((high >> j) & 1) as u8) << 4);
        let upper = (byte >> 4) | ((((high >> (j + 16)) & 1) as u8) << 4);
        values[j] = low as i8 - 16;
        values[j + 16] = upper as i8 - 16;
    }
    (scale, values)
}

/// The portable version of [`dot_rows`]. It sums in a different order than the AVX2 one, so
/// its results may differ from it in the last bits.
fn dot_rows_scalar(weights: &[u8], acts: &[BlockQ8], blocks: usize, out: &mut [f32]) {
    out.fill(0.0);
    for b in 0..blocks {
        let (scale, values) = decode_block(&weights[b * Q5_0_BYTES..(b + 1) * Q5_0_BYTES]);
        for (row, sum) in out.iter_mut().enumerate() {
            let act = &acts[row * blocks + b];
            let dot: i32 = values
                .iter()
                .zip(act.values.iter())
                .map(|(&w, &a)| i32::from(w) * i32::from(a))
                .sum();
            *sum += scale * act.scale * dot as f32;
        }
    }
}

// Every function here is a short sequence of intrinsics whose safety condition (AVX2 and
// FMA present) is the function's own, so their bodies are not split into unsafe blocks.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_op_in_unsafe_fn)]
mod avx2 {
    use super::{BlockQ8, Q5_0_BYTES, ROW_TILE};
    use half::f16;
    use std::arch::x86_64::*;

    /// Expands the 32 bits of `bits` to 32 bytes: 0xFF where the bit is set, else 0.
    #[target_feature(enable = "avx2")]
    unsafe fn bits_to_bytes(bits: u32) -> __m256i {
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0x0000_0000_0000_0000,
            ),
        );
        // Each byte keeps only the bit of its own position within its group of eight.
        let select = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select)
    }

    /// Decodes a Q5_0 block to 32 signed bytes in -16..=15.
    #[target_feature(enable = "avx2")]
    unsafe fn decode(block: &[u8]) -> __m256i {
        let packed = _mm_loadu_si128(block.as_ptr().add(6) as *const __m128i);
        let nibbles = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
            _mm256_set1_epi8(0x0F),
        );
        let high = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        // Values without their fifth bit are nibble - 16: set the top four bits instead.
        let missing_high = _mm256_andnot_si256(bits_to_bytes(high), _mm256_set1_epi8(0xF0u8 as i8));
        _mm256_or_si256(nibbles, missing_high)
    }

    #[target_feature(enable = "avx2")]
    unsafe fn hsum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let single = _mm_add_ss(pair, _mm_movehdup_ps(pair));
        _mm_cvtss_f32(single)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; `acts` holds `out.len() * blocks` blocks.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows(weights: &[u8], acts: &[BlockQ8], blocks: usize, out: &mut [f32]) {
        debug_assert!(out.len() <= ROW_TILE);
        debug_assert!(acts.len() >= out.len() * blocks);
        let rows = out.len();
        let mut sums = [_mm256_setzero_ps(); ROW_TILE];
        let ones = _mm256_set1_epi16(1);
        for b in 0..blocks {
            let block = &weights[b * Q5_0_BYTES..(b + 1) * Q5_0_BYTES];
            let w = decode(block);
            let w_abs = _mm256_sign_epi8(w, w);
            let w_scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
            for (row, sum) in sums.iter_mut().enumerate().take(rows) {
                let act = acts.get_unchecked(row * blocks + b);
                let a = _mm256_loadu_si256(act.values.as_ptr() as *const __m256i);
                // |w| * (a with the sign of w) is w * a, in the unsigned-by-signed form
                // that maddubs multiplies.
                let products = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(a, w));
                let lanes = _mm256_cvtepi32_ps(_mm256_madd_epi16(products, ones));
                *sum = _mm256_fmadd_ps(_mm256_set1_ps(w_scale * act.scale), lanes, *sum);
            }
        }
        for (value, sum) in out.iter_mut().zip(sums.iter()) {
            *value = hsum(*sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};

    /// Returns the matrix and candle's own multiply for the same Q5_0 data, which also
    /// quantizes activations to Q8_0.
    fn matrix(rows: usize, cols: usize) -> candle_core::Result<(Q5_0Matrix, QMatMul)> {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| (((i * 7919) % 97) as f32 - 48.0) / 40.0)
            .collect();
        let dense = Tensor::from_vec(values, (rows, cols), &Device::Cpu)?;
        let q5 = QTensor::quantize(&dense, GgmlDType::Q5_0)?;
        let matrix = Q5_0Matrix::new(rows, cols, q5.data()?.into_owned()).expect("valid layout");
        Ok((matrix, QMatMul::from_qtensor(q5)?))
    }

    fn input(m: usize, cols: usize) -> candle_core::Result<Tensor> {
        let values: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 31 % 23) as f32 - 11.0) / 9.0)
            .collect();
        Tensor::from_vec(values, (m, cols), &Device::Cpu)
    }

    #[test]
    fn matches_candles_quantized_matmul() -> candle_core::Result<()> {
        let (matrix, reference) = matrix(20, 128)?;
        let xs = input(11, 128)?;
        let expected = reference.forward(&xs)?.flatten_all()?.to_vec1::<f32>()?;
        let actual = matrix.forward(&xs)?.flatten_all()?.to_vec1::<f32>()?;
        for (a, e) in actual.iter().zip(&expected) {
            assert!((a - e).abs() <= 1e-4 * e.abs().max(1.0), "{a} vs {e}");
        }
        Ok(())
    }

    #[test]
    fn batch_rows_equal_single_rows_bit_for_bit() -> candle_core::Result<()> {
        let (matrix, _) = matrix(12, 96)?;
        let xs = input(13, 96)?;
        let batch = matrix.forward(&xs)?.to_vec2::<f32>()?;
        for (i, batch_row) in batch.iter().enumerate() {
            let single = matrix.forward(&xs.narrow(0, i, 1)?)?.to_vec2::<f32>()?;
            assert_eq!(&single[0], batch_row, "row {i}");
        }
        Ok(())
    }

    #[test]
    fn scalar_and_simd_agree() {
        let (matrix, _) = matrix(3, 64).unwrap();
        let xs = input(2, 64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let acts: Vec<BlockQ8> = xs.chunks_exact(BLOCK).map(quantize_block).collect();
        let mut simd = [0f32; 2];
        let mut scalar = [0f32; 2];
        dot_rows(matrix.row(1), &acts, 2, &mut simd);
        dot_rows_scalar(matrix.row(1), &acts, 2, &mut scalar);
        for (s, r) in simd.iter().zip(&scalar) {
            assert!((s - r).abs() < 1e-4 * r.abs().max(1.0), "{s} vs {r}");
        }
    }
}
