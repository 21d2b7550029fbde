//! ggml tensor types: ids as in `ggml.h`, block geometry as in ggml's type traits.
//!
//! Types this crate dequantizes get their own variant; every other id is `Other(id)`. The size
//! table below still knows the geometry of the other ggml types, so a file holding, say, an
//! IQ4_XS or I32 tensor opens fine and `tensor_bytes` returns its raw bytes; only
//! `dequantize` refuses it.

use std::fmt;

/// A ggml tensor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)] // the ggml names, so they match llama.cpp output and docs
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    /// Any other ggml type id (kept verbatim).
    Other(u32),
}

/// Name, elements per block and bytes per block of the ggml types without their own variant,
/// by id. Ids 4 and 5 (Q4_2, Q4_3) were removed from ggml; 31..=33 and 36..=38 are unused.
const OTHER_TYPES: &[(u32, &str, usize, usize)] = &[
    (9, "Q8_1", 32, 36),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// The type with ggml id `id`; unknown ids become `Other(id)`.
    pub fn from_id(id: u32) -> GgmlType {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2_K,
            11 => GgmlType::Q3_K,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            15 => GgmlType::Q8_K,
            30 => GgmlType::BF16,
            other => GgmlType::Other(other),
        }
    }

    /// The ggml id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::Q8_K => 15,
            GgmlType::BF16 => 30,
            GgmlType::Other(id) => id,
        }
    }

    /// The ggml name (`Q4_K`, `IQ4_XS`, ...), or `unknown` for ids ggml does not define.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::Q8_K => "Q8_K",
            GgmlType::Other(id) => other(id).map_or("unknown", |t| t.1),
        }
    }

    /// Elements per block (1 for plain float types, 32 or 256 for quantized ones); `None` for
    /// ids ggml does not define.
    pub fn block_size(self) -> Option<usize> {
        self.geometry().map(|(block, _)| block)
    }

    /// Bytes per block; `None` for ids ggml does not define.
    pub fn type_size(self) -> Option<usize> {
        self.geometry().map(|(_, size)| size)
    }

    /// Whether [`crate::dequantize`] handles this type.
    pub fn can_dequantize(self) -> bool {
        !matches!(self, GgmlType::Q8_K | GgmlType::Other(_))
    }

    fn geometry(self) -> Option<(usize, usize)> {
        // Block layouts of ggml-common.h: QK4_0 = QK8_0 = 32, QK_K = 256; the sizes are the
        // packed C structs (f16 scales are 2 bytes, Q8_K's scale is an f32).
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 2 + 16),
            GgmlType::Q4_1 => (32, 2 + 2 + 16),
            GgmlType::Q5_0 => (32, 2 + 4 + 16),
            GgmlType::Q5_1 => (32, 2 + 2 + 4 + 16),
            GgmlType::Q8_0 => (32, 2 + 32),
            GgmlType::Q2_K => (256, 16 + 64 + 2 + 2),
            GgmlType::Q3_K => (256, 32 + 64 + 12 + 2),
            GgmlType::Q4_K => (256, 2 + 2 + 12 + 128),
            GgmlType::Q5_K => (256, 2 + 2 + 12 + 32 + 128),
            GgmlType::Q6_K => (256, 128 + 64 + 16 + 2),
            GgmlType::Q8_K => (256, 4 + 256 + 32),
            GgmlType::Other(id) => return other(id).map(|t| (t.2, t.3)),
        })
    }
}

fn other(id: u32) -> Option<&'static (u32, &'static str, usize, usize)> {
    OTHER_TYPES.iter().find(|t| t.0 == id)
}

impl fmt::Display for GgmlType {
    /// The ggml name; unknown ids print as `unknown type id N` so messages stay specific.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "unknown" => write!(f, "unknown type id {}", self.id()),
            name => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sizes_match_ggml() {
        for id in 0..64 {
            assert_eq!(GgmlType::from_id(id).id(), id);
        }
        assert_eq!(GgmlType::Q4_K.type_size(), Some(144));
        assert_eq!(GgmlType::Q6_K.type_size(), Some(210));
        assert_eq!(GgmlType::Q5_K.type_size(), Some(176));
        assert_eq!(GgmlType::Q3_K.type_size(), Some(110));
        assert_eq!(GgmlType::Q2_K.type_size(), Some(84));
        assert_eq!(GgmlType::Q8_K.type_size(), Some(292));
        assert_eq!(GgmlType::from_id(26).name(), "I32");
        assert_eq!(GgmlType::from_id(99).to_string(), "unknown type id 99");
        assert_eq!(GgmlType::from_id(99).block_size(), None);
    }
}
