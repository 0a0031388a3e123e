//! Matrix multiplies for Q5_0 and Q8_0 weights. candle 0.11 runs Q5_0 with scalar code on
//! x86; Q8_0 is here so that the output projection can compute the logits of a few chosen
//! tokens only, with the same rounding as all of them.
//!
//! Activations are quantized to Q8_0 blocks (32 values and one f16 scale, as llama.cpp
//! does), and weight rows are multiplied with AVX2 or AVX-512 VNNI integer instructions.
//! Every (weight row, activation row) pair keeps its own accumulator and adds its blocks in
//! the same order whatever the number of rows on either side, so one token and a batch of
//! tokens get bit-identical results. That keeps a cached prompt prefix exact: appending
//! tokens to it gives the logits that processing the whole sequence at once gives.
//!
//! Weights stay in their blocks (22 bytes for Q5_0, 34 for Q8_0), which matters for
//! generation, where reading the weights from memory is most of the work. Rows are stored in
//! groups of [`WEIGHT_TILE`], block by block (block 0 of each row of the group, then block 1,
//! ...), so that the weight-tile kernel reads memory in one sequential stream. Reading four
//! rows side by side in the file's own layout ran at a third of the speed once the matrix
//! no longer fitted in the cache: the hardware prefetcher did not follow four streams.

use candle_core::{Device, Tensor};
use half::f16;

pub const BLOCK: usize = 32;

/// Activation rows processed together against one weight row; each decoded weight block is
/// reused this many times.
const ROW_TILE: usize = 8;

/// Weight rows processed together when there are at most [`FEW_ROWS`] activation rows, as
/// while generating: their independent sums hide the latency of each multiply-add chain.
const WEIGHT_TILE: usize = 4;
const FEW_ROWS: usize = 2;

/// The block layouts these kernels read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An f16 scale, 32 fifth bits, then 32 low nibbles: values -16..=15.
    Q5_0,
    /// An f16 scale, then 32 signed bytes.
    Q8_0,
}

impl Format {
    const fn bytes(self) -> usize {
        match self {
            Format::Q5_0 => 22,
            Format::Q8_0 => 34,
        }
    }

    /// Returns what the VNNI kernel adds to each weight to make it unsigned.
    const fn bias(self) -> i8 {
        match self {
            Format::Q5_0 => 16,
            // 128 as an unsigned byte.
            Format::Q8_0 => i8::MIN,
        }
    }
}

/// The output buffer shared by the workers of one multiply.
#[derive(Clone, Copy)]
struct Output(*mut f32);

// SAFETY: workers write through the pointer only at indices of the weight rows they were
// handed, and each weight row goes to exactly one worker.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

impl Output {
    /// # Safety
    /// `index` is within the buffer and no other thread writes it.
    unsafe fn write(self, index: usize, value: f32) {
        unsafe { *self.0.add(index) = value };
    }
}

/// Per activation block, minus the format's bias times the sum of each group of four
/// values: the VNNI kernel multiplies the unsigned `w + bias` and adds this back to get
/// `w * a`.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Offset([i32; 8]);

/// Quantized activations with what the chosen kernel needs besides.
struct Activations {
    blocks: Vec<BlockQ8>,
    offsets: Vec<Offset>,
    blocks_per_row: usize,
}

impl Activations {
    /// Returns the blocks and offsets of `count` rows, starting at row `first`.
    fn rows(&self, first: usize, count: usize) -> (&[BlockQ8], &[Offset]) {
        let range = first * self.blocks_per_row..(first + count) * self.blocks_per_row;
        let offsets = self.offsets.get(range.clone()).unwrap_or(&[]);
        (&self.blocks[range], offsets)
    }
}

/// The instruction set the multiply runs on, chosen once per call from the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Scalar,
    Avx2,
    Vnni,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                    return Kernel::Vnni;
                }
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    fn quantize(self, format: Format, input: &[f32], cols: usize) -> Activations {
        let blocks: Vec<BlockQ8> = input.chunks_exact(BLOCK).map(quantize_block).collect();
        let offsets = match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Vnni` is only chosen on a CPU with those instructions.
            Kernel::Vnni => blocks
                .iter()
                .map(|a| unsafe { vnni::offset(a, format.bias()) })
                .collect(),
            _ => Vec::new(),
        };
        Activations {
            blocks,
            offsets,
            blocks_per_row: cols / BLOCK,
        }
    }

    /// Multiplies one weight row, given as its bytes from the first block on and the
    /// distance between two blocks, by `out.len()` (at most [`ROW_TILE`]) activation rows.
    fn dot_rows(
        self,
        format: Format,
        (weights, stride): (&[u8], usize),
        (acts, offsets): (&[BlockQ8], &[Offset]),
        blocks: usize,
        out: &mut [f32],
    ) {
        match (self, format) {
            // SAFETY (every arm): each kernel is only chosen on a CPU with its instructions.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Vnni, Format::Q5_0) => unsafe {
                vnni::dot_rows::<false>(weights, stride, acts, offsets, blocks, out)
            },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Vnni, Format::Q8_0) => unsafe {
                vnni::dot_rows::<true>(weights, stride, acts, offsets, blocks, out)
            },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, Format::Q5_0) => unsafe {
                avx2::dot_rows::<false>(weights, stride, acts, blocks, out)
            },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, Format::Q8_0) => unsafe {
                avx2::dot_rows::<true>(weights, stride, acts, blocks, out)
            },
            _ => dot_rows_scalar(format, (weights, stride), acts, blocks, out),
        }
    }

    /// Multiplies one group of [`WEIGHT_TILE`] weight rows by `count` (at most
    /// [`FEW_ROWS`]) activation rows.
    fn dot_weight_tile(
        self,
        format: Format,
        weights: &[u8],
        (acts, offsets): (&[BlockQ8], &[Offset]),
        count: usize,
        blocks: usize,
        out: &mut [[f32; FEW_ROWS]; WEIGHT_TILE],
    ) {
        match (self, format) {
            // SAFETY (every arm): each kernel is only chosen on a CPU with its instructions.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Vnni, Format::Q5_0) => unsafe {
                vnni::dot_weight_tile::<false>(weights, acts, offsets, count, blocks, out)
            },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Vnni, Format::Q8_0) => unsafe {
                vnni::dot_weight_tile::<true>(weights, acts, offsets, count, blocks, out)
            },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, Format::Q5_0) => unsafe {
                avx2::dot_weight_tile::<false>(weights, acts, count, blocks, out)
            },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, Format::Q8_0) => unsafe {
                avx2::dot_weight_tile::<true>(weights, acts, count, blocks, out)
            },
            _ => {
                let size = format.bytes();
                for (k, sums) in out.iter_mut().enumerate() {
                    let row = (&weights[k * size..], WEIGHT_TILE * size);
                    self.dot_rows(format, row, (acts, offsets), blocks, &mut sums[..count]);
                }
            }
        }
    }
}

/// One block of quantized activations.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ8 {
    scale: f32,
    values: [i8; BLOCK],
}

/// A weight matrix of shape `(rows, cols)` in Q5_0 or Q8_0 blocks, used as `x @ W^T`.
///
/// `blocks` holds the rows in groups of [`WEIGHT_TILE`], each group block by block. A last
/// group with fewer rows is padded with zero blocks.
pub struct QuantMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    blocks: Vec<u8>,
}

impl QuantMatrix {
    /// Creates the matrix from data stored row after row, as in a GGUF file. Returns `None`
    /// unless `cols` is a multiple of 32 and `data` contains exactly `rows` rows.
    pub fn new(format: Format, rows: usize, cols: usize, data: &[u8]) -> Option<Self> {
        let row_bytes = cols / BLOCK * format.bytes();
        if !cols.is_multiple_of(BLOCK) || data.len() != rows * row_bytes {
            return None;
        }
        let mut matrix = Self {
            format,
            rows,
            cols,
            blocks: vec![0; rows.div_ceil(WEIGHT_TILE) * WEIGHT_TILE * row_bytes],
        };
        for (row, bytes) in data.chunks_exact(row_bytes).enumerate() {
            matrix.set_row(row, bytes);
        }
        Some(matrix)
    }

    /// Stacks matrices of the same format and width into one, rows in the order given.
    pub fn stack(parts: &[&QuantMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.cols != first.cols || p.format != first.format)
        {
            return None;
        }
        let mut data = Vec::new();
        for part in parts {
            for row in 0..part.rows {
                data.extend(part.row_bytes(row));
            }
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        Self::new(first.format, rows, first.cols, &data)
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// Returns the byte offset of the first block of `row` and the distance between two of
    /// its blocks.
    fn row_start(&self, row: usize) -> (usize, usize) {
        let size = self.format.bytes();
        let group = row / WEIGHT_TILE * WEIGHT_TILE * self.blocks_per_row() * size;
        (group + row % WEIGHT_TILE * size, WEIGHT_TILE * size)
    }

    fn set_row(&mut self, row: usize, bytes: &[u8]) {
        let size = self.format.bytes();
        let (start, stride) = self.row_start(row);
        for (b, block) in bytes.chunks_exact(size).enumerate() {
            let at = start + b * stride;
            self.blocks[at..at + size].copy_from_slice(block);
        }
    }

    /// Returns the blocks of `row` in order, as the file stored them.
    fn row_bytes(&self, row: usize) -> impl Iterator<Item = u8> + '_ {
        let size = self.format.bytes();
        let (start, stride) = self.row_start(row);
        (0..self.blocks_per_row())
            .flat_map(move |b| self.blocks[start + b * stride..start + b * stride + size].iter())
            .copied()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Returns the bytes from the first block of row `index` to the end of its group. The
    /// row's blocks lie [`Self::stride`] bytes apart.
    fn row(&self, index: usize) -> &[u8] {
        let (start, _) = self.row_start(index);
        let group_end = (index / WEIGHT_TILE + 1) * WEIGHT_TILE * self.blocks_per_row();
        &self.blocks[start..group_end * self.format.bytes()]
    }

    fn stride(&self) -> usize {
        WEIGHT_TILE * self.format.bytes()
    }

    /// Returns the group of [`WEIGHT_TILE`] rows that starts at row `first`.
    fn group(&self, first: usize) -> &[u8] {
        debug_assert!(first.is_multiple_of(WEIGHT_TILE));
        let bytes = WEIGHT_TILE * self.blocks_per_row() * self.format.bytes();
        let start = first / WEIGHT_TILE * bytes;
        &self.blocks[start..start + bytes]
    }

    /// Computes `xs @ W^T` for `xs` of shape `(..., cols)`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dims = xs.dims().to_vec();
        let Some((&cols, batch_dims)) = dims.split_last() else {
            candle_core::bail!("a quantized matmul needs an input with at least one dimension");
        };
        self.check_width(cols)?;
        let input = xs.flatten_all()?.to_vec1::<f32>()?;
        let m = input.len() / cols;
        let kernel = Kernel::detect();
        let acts = kernel.quantize(self.format, &input, cols);

        // Column-major result: one contiguous run of `m` outputs per weight row.
        let mut by_weight_row = vec![0f32; self.rows * m];
        let out = Output(by_weight_row.as_mut_ptr());
        let groups = self.rows.div_ceil(WEIGHT_TILE);
        candle_core::utils::barrier_pool().execute_chunked(groups, |range| {
            let end = (range.end * WEIGHT_TILE).min(self.rows);
            let rows: Vec<usize> = (range.start * WEIGHT_TILE..end).collect();
            // SAFETY: this worker's weight rows are its own, so are their outputs.
            self.multiply_rows(kernel, &rows, &acts, m, |i, j, sum| unsafe {
                out.write(rows[i] * m + j, sum)
            });
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

    /// Computes `x @ W^T` for one input row `x`, for the weight rows in `rows` only, in that
    /// order. Each value equals the one [`QuantMatrix::forward`] gives for the same row.
    pub fn forward_rows(&self, x: &[f32], rows: &[usize]) -> candle_core::Result<Vec<f32>> {
        self.check_width(x.len())?;
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.rows) {
            candle_core::bail!("row {bad} is beyond the matrix's {} rows", self.rows);
        }
        let kernel = Kernel::detect();
        let acts = kernel.quantize(self.format, x, self.cols);
        let mut output = vec![0f32; rows.len()];
        let out = Output(output.as_mut_ptr());
        candle_core::utils::barrier_pool().execute_chunked(rows.len(), |range| {
            let first = range.start;
            // SAFETY: this worker writes only the outputs of its own range.
            self.multiply_rows(kernel, &rows[range], &acts, 1, |i, _, sum| unsafe {
                out.write(first + i, sum)
            });
        });
        Ok(output)
    }

    fn check_width(&self, cols: usize) -> candle_core::Result<()> {
        if cols != self.cols {
            candle_core::bail!(
                "input width {cols} does not match the weight's {}",
                self.cols
            );
        }
        Ok(())
    }

    /// Multiplies the weight rows `rows` by all `m` activation rows and hands each result
    /// to `store(index in rows, activation row, value)`.
    fn multiply_rows(
        &self,
        kernel: Kernel,
        rows: &[usize],
        acts: &Activations,
        m: usize,
        mut store: impl FnMut(usize, usize, f32),
    ) {
        let blocks = acts.blocks_per_row;
        let stride = self.stride();
        let mut i = 0;
        while i < rows.len() {
            // A tile takes one whole group of rows, in order. With weights from memory, on
            // an AMD EPYC, tiles read Q5_0 at 10 GB/s with AVX2 and 15.6 GB/s with VNNI,
            // against 6.4 and 6.7 GB/s for one row at a time.
            let whole_group = rows[i].is_multiple_of(WEIGHT_TILE)
                && rows.get(i + WEIGHT_TILE - 1) == Some(&(rows[i] + WEIGHT_TILE - 1));
            let group = if whole_group { WEIGHT_TILE } else { 1 };
            for first in (0..m).step_by(ROW_TILE) {
                let count = ROW_TILE.min(m - first);
                let tile = acts.rows(first, count);
                if group == WEIGHT_TILE && count <= FEW_ROWS {
                    let weights = self.group(rows[i]);
                    let mut sums = [[0f32; FEW_ROWS]; WEIGHT_TILE];
                    kernel.dot_weight_tile(self.format, weights, tile, count, blocks, &mut sums);
                    for (k, sums) in sums.iter().enumerate() {
                        for (j, &sum) in sums.iter().take(count).enumerate() {
                            store(i + k, first + j, sum);
                        }
                    }
                } else {
                    for (k, &row) in rows.iter().enumerate().skip(i).take(group) {
                        let mut sums = [0f32; ROW_TILE];
                        let out = &mut sums[..count];
                        let weights = (self.row(row), stride);
                        kernel.dot_rows(self.format, weights, tile, blocks, out);
                        for (j, &sum) in sums.iter().take(count).enumerate() {
                            store(k, first + j, sum);
                        }
                    }
                }
            }
            i += group;
        }
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

/// Decodes one block into its scale and 32 integers.
fn decode_block(format: Format, block: &[u8]) -> (f32, [i8; BLOCK]) {
    let scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
    let mut values = [0i8; BLOCK];
    match format {
        Format::Q5_0 => {
            let high = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            for (j, &byte) in block[6..22].iter().enumerate() {
                let low = (byte & 0x0F) | ((((high >> j) & 1) as u8) << 4);
                let upper = (byte >> 4) | ((((high >> (j + 16)) & 1) as u8) << 4);
                values[j] = low as i8 - 16;
                values[j + 16] = upper as i8 - 16;
            }
        }
        Format::Q8_0 => {
            for (value, &byte) in values.iter_mut().zip(&block[2..34]) {
                *value = byte as i8;
            }
        }
    }
    (scale, values)
}

/// The portable version of [`Kernel::dot_rows`]. It sums in a different order than the
/// SIMD ones, so its results may differ from theirs in the last bits.
fn dot_rows_scalar(
    format: Format,
    (weights, stride): (&[u8], usize),
    acts: &[BlockQ8],
    blocks: usize,
    out: &mut [f32],
) {
    out.fill(0.0);
    let size = format.bytes();
    for b in 0..blocks {
        let (scale, values) = decode_block(format, &weights[b * stride..b * stride + size]);
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

/// Returns the byte size of a block: Q8_0 when `Q8`, else Q5_0.
const fn block_bytes<const Q8: bool>() -> usize {
    if Q8 {
        Format::Q8_0.bytes()
    } else {
        Format::Q5_0.bytes()
    }
}

// Every function here is a short sequence of intrinsics whose safety condition (AVX2 and
// FMA present) is the function's own, so their bodies are not split into unsafe blocks.
// `Q8` picks the block format at compile time: Q8_0 when true, else Q5_0.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_op_in_unsafe_fn)]
mod avx2 {
    use super::{BlockQ8, FEW_ROWS, ROW_TILE, WEIGHT_TILE, block_bytes};
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

    /// Decodes a block to 32 signed bytes.
    #[target_feature(enable = "avx2")]
    unsafe fn decode<const Q8: bool>(block: &[u8]) -> __m256i {
        if Q8 {
            return _mm256_loadu_si256(block.as_ptr().add(2) as *const __m256i);
        }
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
    pub(super) unsafe fn hsum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let single = _mm_add_ss(pair, _mm_movehdup_ps(pair));
        _mm_cvtss_f32(single)
    }

    /// Computes the eight partial sums of `w * a` over one block, each over four neighbouring
    /// values.
    #[target_feature(enable = "avx2")]
    unsafe fn lanes(w: __m256i, w_abs: __m256i, act: &BlockQ8) -> __m256 {
        let a = _mm256_loadu_si256(act.values.as_ptr() as *const __m256i);
        // |w| * (a with the sign of w) is w * a, in the unsigned-by-signed form that maddubs
        // multiplies; with |w| <= 128 and |a| <= 127 no pair reaches the i16 limit.
        let products = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(a, w));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(products, _mm256_set1_epi16(1)))
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA, and `acts` holds `out.len() * blocks` blocks.
    /// Block `b` of the weight row starts at byte `b * stride` of `weights`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows<const Q8: bool>(
        weights: &[u8],
        stride: usize,
        acts: &[BlockQ8],
        blocks: usize,
        out: &mut [f32],
    ) {
        debug_assert!(out.len() <= ROW_TILE);
        debug_assert!(acts.len() >= out.len() * blocks);
        let size = block_bytes::<Q8>();
        let rows = out.len();
        let mut sums = [_mm256_setzero_ps(); ROW_TILE];
        for b in 0..blocks {
            let block = weights.get_unchecked(b * stride..b * stride + size);
            let w = decode::<Q8>(block);
            let w_abs = _mm256_sign_epi8(w, w);
            let w_scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
            for (row, sum) in sums.iter_mut().enumerate().take(rows) {
                let act = acts.get_unchecked(row * blocks + b);
                *sum = _mm256_fmadd_ps(
                    _mm256_set1_ps(w_scale * act.scale),
                    lanes(w, w_abs, act),
                    *sum,
                );
            }
        }
        for (value, sum) in out.iter_mut().zip(sums.iter()) {
            *value = hsum(*sum);
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA. `weights` is one group of rows, block by block.
    /// `acts` holds `count * blocks` blocks, and `count` is at most [`FEW_ROWS`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_weight_tile<const Q8: bool>(
        weights: &[u8],
        acts: &[BlockQ8],
        count: usize,
        blocks: usize,
        out: &mut [[f32; FEW_ROWS]; WEIGHT_TILE],
    ) {
        match count {
            1 => weight_tile::<Q8, 1>(weights, acts, blocks, out),
            _ => weight_tile::<Q8, FEW_ROWS>(weights, acts, blocks, out),
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn weight_tile<const Q8: bool, const ROWS: usize>(
        weights: &[u8],
        acts: &[BlockQ8],
        blocks: usize,
        out: &mut [[f32; FEW_ROWS]; WEIGHT_TILE],
    ) {
        debug_assert!(acts.len() >= ROWS * blocks);
        let size = block_bytes::<Q8>();
        let mut sums = [[_mm256_setzero_ps(); ROWS]; WEIGHT_TILE];
        for b in 0..blocks {
            for (k, sums) in sums.iter_mut().enumerate() {
                let at = (b * WEIGHT_TILE + k) * size;
                let block = weights.get_unchecked(at..at + size);
                let w = decode::<Q8>(block);
                let w_abs = _mm256_sign_epi8(w, w);
                let w_scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
                for (row, sum) in sums.iter_mut().enumerate() {
                    let act = acts.get_unchecked(row * blocks + b);
                    *sum = _mm256_fmadd_ps(
                        _mm256_set1_ps(w_scale * act.scale),
                        lanes(w, w_abs, act),
                        *sum,
                    );
                }
            }
        }
        for (out, sums) in out.iter_mut().zip(sums.iter()) {
            for (value, sum) in out.iter_mut().zip(sums.iter()) {
                *value = hsum(*sum);
            }
        }
    }
}

// The same kernels with AVX-512 VNNI: the weights are decoded to unsigned `w + bias`, which
// `dpbusd` multiplies and sums in one instruction, and the per-block offset takes the bias
// back out. Every partial sum equals the AVX2 kernel's, so results are bit-identical.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_op_in_unsafe_fn)]
mod vnni {
    use super::avx2::hsum;
    use super::{BlockQ8, FEW_ROWS, Offset, ROW_TILE, WEIGHT_TILE, block_bytes};
    use half::f16;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512 F, BW, VL and VNNI.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn offset(act: &BlockQ8, bias: i8) -> Offset {
        let a = _mm256_loadu_si256(act.values.as_ptr() as *const __m256i);
        let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(bias), a);
        let mut offset = Offset([0; 8]);
        _mm256_store_si256(
            offset.0.as_mut_ptr() as *mut __m256i,
            _mm256_sub_epi32(_mm256_setzero_si256(), sums),
        );
        offset
    }

    /// Decodes a block to 32 unsigned bytes `w + bias`.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn decode<const Q8: bool>(block: &[u8]) -> __m256i {
        if Q8 {
            let w = _mm256_loadu_si256(block.as_ptr().add(2) as *const __m256i);
            return _mm256_xor_si256(w, _mm256_set1_epi8(i8::MIN));
        }
        let packed = _mm_loadu_si128(block.as_ptr().add(6) as *const __m128i);
        let nibbles = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
            _mm256_set1_epi8(0x0F),
        );
        let high = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        _mm256_mask_add_epi8(nibbles, high, nibbles, _mm256_set1_epi8(0x10))
    }

    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn lanes(w: __m256i, act: &BlockQ8, offset: &Offset) -> __m256 {
        let a = _mm256_loadu_si256(act.values.as_ptr() as *const __m256i);
        let start = _mm256_load_si256(offset.0.as_ptr() as *const __m256i);
        _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(start, w, a))
    }

    /// # Safety
    /// As [`super::avx2::dot_rows`], on a CPU with AVX-512 F, BW, VL and VNNI; `offsets`
    /// has one entry per block of `acts`, made with this format's bias.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn dot_rows<const Q8: bool>(
        weights: &[u8],
        stride: usize,
        acts: &[BlockQ8],
        offsets: &[Offset],
        blocks: usize,
        out: &mut [f32],
    ) {
        debug_assert!(out.len() <= ROW_TILE);
        debug_assert!(acts.len() >= out.len() * blocks && offsets.len() >= acts.len());
        let size = block_bytes::<Q8>();
        let rows = out.len();
        let mut sums = [_mm256_setzero_ps(); ROW_TILE];
        for b in 0..blocks {
            let block = weights.get_unchecked(b * stride..b * stride + size);
            let w = decode::<Q8>(block);
            let w_scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
            for (row, sum) in sums.iter_mut().enumerate().take(rows) {
                let index = row * blocks + b;
                let act = acts.get_unchecked(index);
                *sum = _mm256_fmadd_ps(
                    _mm256_set1_ps(w_scale * act.scale),
                    lanes(w, act, offsets.get_unchecked(index)),
                    *sum,
                );
            }
        }
        for (value, sum) in out.iter_mut().zip(sums.iter()) {
            *value = hsum(*sum);
        }
    }

    /// # Safety
    /// The CPU must support AVX-512 F, BW, VL and VNNI. `weights` is one group of rows,
    /// block by block. `acts` holds `count * blocks` blocks, `count` is at most
    /// [`FEW_ROWS`], and `offsets` has one entry per block of `acts`.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn dot_weight_tile<const Q8: bool>(
        weights: &[u8],
        acts: &[BlockQ8],
        offsets: &[Offset],
        count: usize,
        blocks: usize,
        out: &mut [[f32; FEW_ROWS]; WEIGHT_TILE],
    ) {
        match count {
            1 => weight_tile::<Q8, 1>(weights, acts, offsets, blocks, out),
            _ => weight_tile::<Q8, FEW_ROWS>(weights, acts, offsets, blocks, out),
        }
    }

    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn weight_tile<const Q8: bool, const ROWS: usize>(
        weights: &[u8],
        acts: &[BlockQ8],
        offsets: &[Offset],
        blocks: usize,
        out: &mut [[f32; FEW_ROWS]; WEIGHT_TILE],
    ) {
        debug_assert!(acts.len() >= ROWS * blocks && offsets.len() >= acts.len());
        let size = block_bytes::<Q8>();
        let mut sums = [[_mm256_setzero_ps(); ROWS]; WEIGHT_TILE];
        for b in 0..blocks {
            for (k, sums) in sums.iter_mut().enumerate() {
                let at = (b * WEIGHT_TILE + k) * size;
                let block = weights.get_unchecked(at..at + size);
                let w = decode::<Q8>(block);
                let w_scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
                for (row, sum) in sums.iter_mut().enumerate() {
                    let index = row * blocks + b;
                    let act = acts.get_unchecked(index);
                    *sum = _mm256_fmadd_ps(
                        _mm256_set1_ps(w_scale * act.scale),
                        lanes(w, act, offsets.get_unchecked(index)),
                        *sum,
                    );
                }
            }
        }
        for (out, sums) in out.iter_mut().zip(sums.iter()) {
            for (value, sum) in out.iter_mut().zip(sums.iter()) {
                *value = hsum(*sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};

    const FORMATS: [Format; 2] = [Format::Q5_0, Format::Q8_0];

    /// Returns the matrix and candle's own multiply for the same data, which also quantizes
    /// activations to Q8_0.
    fn matrix(format: Format, rows: usize, cols: usize) -> (QuantMatrix, QMatMul) {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| (((i * 7919) % 97) as f32 - 48.0) / 40.0)
            .collect();
        let dense = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        let dtype = match format {
            Format::Q5_0 => GgmlDType::Q5_0,
            Format::Q8_0 => GgmlDType::Q8_0,
        };
        let quantized = QTensor::quantize(&dense, dtype).unwrap();
        let data = quantized.data().unwrap().into_owned();
        let matrix = QuantMatrix::new(format, rows, cols, &data).expect("valid layout");
        (matrix, QMatMul::from_qtensor(quantized).unwrap())
    }

    fn input(m: usize, cols: usize) -> Tensor {
        let values: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 31 % 23) as f32 - 11.0) / 9.0)
            .collect();
        Tensor::from_vec(values, (m, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_candles_quantized_matmul() -> candle_core::Result<()> {
        for format in FORMATS {
            let (matrix, reference) = matrix(format, 20, 128);
            let xs = input(11, 128);
            let expected = reference.forward(&xs)?.flatten_all()?.to_vec1::<f32>()?;
            let actual = matrix.forward(&xs)?.flatten_all()?.to_vec1::<f32>()?;
            for (a, e) in actual.iter().zip(&expected) {
                assert!(
                    (a - e).abs() <= 1e-4 * e.abs().max(1.0),
                    "{format:?}: {a} vs {e}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn batch_rows_equal_single_rows_bit_for_bit() -> candle_core::Result<()> {
        // 14 weight rows leave a remainder after groups of four; 13 activation rows give a
        // full tile and a short one, and 10 rows a tile of two, which takes the weight-tile
        // kernel.
        for format in FORMATS {
            let (matrix, _) = matrix(format, 14, 96);
            for m in [13, 10] {
                let xs = input(m, 96);
                let batch = matrix.forward(&xs)?.to_vec2::<f32>()?;
                for (i, batch_row) in batch.iter().enumerate() {
                    let single = matrix.forward(&xs.narrow(0, i, 1)?)?.to_vec2::<f32>()?;
                    assert_eq!(&single[0], batch_row, "{format:?}, {m} rows, row {i}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn forward_rows_equals_full_forward() -> candle_core::Result<()> {
        for format in FORMATS {
            let (matrix, _) = matrix(format, 30, 64);
            let xs = input(1, 64);
            let full = matrix.forward(&xs)?.flatten_all()?.to_vec1::<f32>()?;
            let x = xs.flatten_all()?.to_vec1::<f32>()?;
            let rows = [29, 3, 4, 5, 6, 7, 0, 17];
            let chosen = matrix.forward_rows(&x, &rows)?;
            let expected: Vec<f32> = rows.iter().map(|&r| full[r]).collect();
            assert_eq!(chosen, expected, "{format:?}");
            assert!(matrix.forward_rows(&x, &[30]).is_err());
        }
        Ok(())
    }

    /// Runs both tile shapes of `kernel` on the same rows and returns
    /// `[weight row][activation row]` results.
    fn both_shapes(kernel: Kernel, matrix: &QuantMatrix, xs: &[f32]) -> Vec<[f32; 2]> {
        let acts = kernel.quantize(matrix.format, xs, matrix.cols);
        let blocks = acts.blocks_per_row;
        let mut tile = [[0f32; FEW_ROWS]; WEIGHT_TILE];
        kernel.dot_weight_tile(
            matrix.format,
            matrix.group(0),
            acts.rows(0, 2),
            2,
            blocks,
            &mut tile,
        );
        let mut rows = Vec::new();
        for (i, tiled) in tile.iter().enumerate() {
            let mut single = [0f32; 2];
            kernel.dot_rows(
                matrix.format,
                (matrix.row(i), matrix.stride()),
                acts.rows(0, 2),
                blocks,
                &mut single,
            );
            assert_eq!(&single, tiled, "{kernel:?}, weight row {i}");
            rows.push(single);
        }
        rows
    }

    #[test]
    fn every_kernel_agrees_with_the_scalar_one() {
        for format in FORMATS {
            let (matrix, _) = matrix(format, 4, 64);
            let xs = input(2, 64)
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let scalar = both_shapes(Kernel::Scalar, &matrix, &xs);
            let best = Kernel::detect();
            let simd = both_shapes(best, &matrix, &xs);
            for (s, r) in simd.iter().flatten().zip(scalar.iter().flatten()) {
                assert!(
                    (s - r).abs() < 1e-4 * r.abs().max(1.0),
                    "{format:?}: {s} vs {r}"
                );
            }
            // The VNNI kernel must round exactly as the AVX2 one, so that a machine's results
            // do not depend on which of the two it has.
            if best == Kernel::Vnni {
                assert_eq!(both_shapes(Kernel::Avx2, &matrix, &xs), simd, "{format:?}");
            }
        }
    }

    /// Prints the best time of each kernel on a generation-sized multiply (one activation
    /// row) and a prompt-sized one (eight rows), on 24 matrices of 3.5 MB each: more than a
    /// 32 MB cache holds, so the weights come from memory as in a real model. Run with
    /// `cargo test --release --lib kernels::tests::kernel_times -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn kernel_times() {
        for format in FORMATS {
            let (rows, cols) = (4864, 896);
            let size = format.bytes();
            let matrices: Vec<QuantMatrix> = (0..24)
                .map(|copy| {
                    // Each block gets the f16 scale 1/16, the rest varies.
                    let data: Vec<u8> = (0..rows * cols / BLOCK * size)
                        .map(|i| match i % size {
                            0 => 0x00,
                            1 => 0x2C,
                            _ => ((i * 131 + copy) % 251) as u8,
                        })
                        .collect();
                    QuantMatrix::new(format, rows, cols, &data).expect("valid layout")
                })
                .collect();
            let xs: Vec<f32> = (0..cols * ROW_TILE)
                .map(|i| (i % 17) as f32 - 8.0)
                .collect();
            let all: Vec<usize> = (0..rows).collect();
            for kernel in [Kernel::Avx2, Kernel::detect()] {
                let mut best = [f64::MAX; 2];
                for _ in 0..5 {
                    for (m, best) in [1, ROW_TILE].into_iter().zip(best.iter_mut()) {
                        let acts = kernel.quantize(format, &xs[..m * cols], cols);
                        let started = std::time::Instant::now();
                        for matrix in &matrices {
                            matrix.multiply_rows(kernel, &all, &acts, m, |_, _, v| {
                                std::hint::black_box(v);
                            });
                        }
                        let seconds = started.elapsed().as_secs_f64() / matrices.len() as f64;
                        *best = best.min(seconds / m as f64);
                    }
                }
                let bytes = (rows * cols / BLOCK * size) as f64;
                println!(
                    "{format:?} {kernel:?}: one row {:.1} GB/s, {ROW_TILE} rows {:.1} us per row",
                    bytes / best[0] / 1e9,
                    best[1] * 1e6
                );
            }
        }
    }
}
