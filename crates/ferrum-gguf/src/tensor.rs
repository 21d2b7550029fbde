//! One entry of the tensor table.

use crate::{GgmlType, GgufError};

/// A tensor's name, shape, type and where its bytes are.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying dimension (the row length), so a PyTorch
    /// weight of shape `[out, in]` appears here as `[in, out]`.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset of the tensor data, relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements (product of `dims`; 1 for zero dims). Saturates at `u64::MAX` for a
    /// hand-built `TensorInfo` whose dims overflow; tensors parsed from a file never do, as the
    /// parser rejects them.
    pub fn n_elements(&self) -> u64 {
        self.checked_n_elements().unwrap_or(u64::MAX)
    }

    /// Size of the tensor data in bytes. Errors when the type's geometry is unknown, when the
    /// row length is not a whole number of blocks, or when the size overflows.
    pub fn n_bytes(&self) -> Result<u64, GgufError> {
        let (Some(block), Some(size)) = (self.ggml_type.block_size(), self.ggml_type.type_size())
        else {
            return Err(GgufError::UnsupportedType {
                tensor: self.name.clone(),
                ty: self.ggml_type.to_string(),
            });
        };
        let n = self.checked_n_elements().ok_or_else(|| {
            GgufError::Corrupt(format!(
                "tensor '{}': dims {:?} multiply to more than 2^64 elements",
                self.name, self.dims
            ))
        })?;
        // ggml requires whole blocks per row, not just per tensor: rows are the unit of matmul.
        let row = self.dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(block as u64) {
            return Err(GgufError::Corrupt(format!(
                "tensor '{}': row length {row} (dims {:?}) is not a multiple of the {} block \
                 size {block}",
                self.name, self.dims, self.ggml_type
            )));
        }
        (n / block as u64).checked_mul(size as u64).ok_or_else(|| {
            GgufError::Corrupt(format!(
                "tensor '{}': {} {} elements do not fit in 2^64 bytes",
                self.name, n, self.ggml_type
            ))
        })
    }

    pub(crate) fn checked_n_elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }
}
