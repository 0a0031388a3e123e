//! Lossless conversion of Q5_0 weights to Q8_0.
//!
//! candle 0.11 multiplies Q5_0 matrices with scalar code on x86, while Q8_0 has an AVX2
//! kernel. A Q5_0 block stores 32 integers in -16..=15 with one f16 scale; a Q8_0 block
//! stores 32 integers in -127..=127 with one f16 scale. Copying the scale and widening each
//! integer gives exactly the same weights, so results match llama.cpp, which multiplies
//! Q5_0 weights by Q8_0-quantized activations just as candle multiplies Q8_0 by Q8_0.
//! The cost is memory: 34 bytes per 32 weights instead of 22.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;

const BLOCK: usize = 32;
const Q5_0_BYTES: usize = 22;
const Q8_0_BYTES: usize = 34;

/// Converts the raw bytes of Q5_0 blocks into Q8_0 blocks.
fn q5_0_blocks_to_q8_0(src: &[u8]) -> Vec<u8> {
    let mut dst = Vec::with_capacity(src.len() / Q5_0_BYTES * Q8_0_BYTES);
    for block in src.chunks_exact(Q5_0_BYTES) {
        let (scale, rest) = block.split_at(2);
        let (high_bits, low_nibbles) = rest.split_at(4);
        let high = u32::from_le_bytes([high_bits[0], high_bits[1], high_bits[2], high_bits[3]]);
        dst.extend_from_slice(scale);
        let mut values = [0u8; BLOCK];
        for (j, &byte) in low_nibbles.iter().enumerate() {
            let low = (byte & 0x0F) | ((((high >> j) & 1) as u8) << 4);
            let upper = (byte >> 4) | ((((high >> (j + 16)) & 1) as u8) << 4);
            values[j] = (low as i8 - 16) as u8;
            values[j + 16] = (upper as i8 - 16) as u8;
        }
        dst.extend_from_slice(&values);
    }
    dst
}

/// Returns `qt` with Q5_0 weights stored as Q8_0; other types are returned unchanged.
pub fn q5_0_as_q8_0(qt: QTensor, device: &Device) -> candle_core::Result<QTensor> {
    if qt.dtype() != GgmlDType::Q5_0 {
        return Ok(qt);
    }
    let converted = q5_0_blocks_to_q8_0(&qt.data()?);
    let storage = QStorage::from_data(Cow::Owned(converted), device, GgmlDType::Q8_0)?;
    QTensor::new(storage, qt.shape().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn conversion_keeps_every_weight() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let values: Vec<f32> = (0..4 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let dense = Tensor::from_vec(values, (4, 64), &device)?;
        let q5 = QTensor::quantize(&dense, GgmlDType::Q5_0)?;
        let expected = q5.dequantize(&device)?.flatten_all()?.to_vec1::<f32>()?;
        let q8 = q5_0_as_q8_0(q5, &device)?;
        assert_eq!(q8.dtype(), GgmlDType::Q8_0);
        let actual = q8.dequantize(&device)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(actual, expected);
        Ok(())
    }
}
