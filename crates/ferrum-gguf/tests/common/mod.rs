//! Shared test helpers: fixture paths, the gguf-py expectations, a hand-rolled GGUF byte
//! builder for malformed files, and a tiny seeded PRNG (no extra dependencies).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use ferrum_gguf::GgmlType;

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

pub fn fixture_bytes() -> Vec<u8> {
    std::fs::read(fixture_dir().join("fixture.gguf")).expect("tests/fixtures/fixture.gguf")
}

/// One tensor of `fixture.expected.json`.
pub struct Expected {
    pub name: String,
    pub ty: String,
    pub dims: Vec<u64>,
    /// gguf-py's dequantized values; `None` for the types ferrum-gguf does not dequantize.
    pub values: Option<Vec<f32>>,
}

pub fn expected_tensors() -> Vec<Expected> {
    let dir = fixture_dir();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("fixture.expected.json")).unwrap()).unwrap();
    let bin = std::fs::read(dir.join("fixture.expected.bin")).unwrap();
    let all: Vec<f32> = bin
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Expected {
            name: t["name"].as_str().unwrap().to_string(),
            ty: t["type"].as_str().unwrap().to_string(),
            dims: t["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect(),
            values: t.get("offset").map(|off| {
                let off = off.as_u64().unwrap() as usize;
                let n = t["count"].as_u64().unwrap() as usize;
                all[off..off + n].to_vec()
            }),
        })
        .collect()
}

/// Bitwise equality, except that any NaN matches any NaN (NaN payloads may legitimately
/// differ between f16 conversion routines).
pub fn assert_same_f32(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(
            same,
            "{what}[{i}]: got {g:e} ({:#010x}), gguf-py {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

pub fn ggml_type_named(name: &str) -> GgmlType {
    (0..64)
        .map(GgmlType::from_id)
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("no ggml type named {name}"))
}

/// Little-endian GGUF writer for hand-made (often deliberately broken) files.
#[derive(Default, Clone)]
pub struct Gguf(pub Vec<u8>);

impl Gguf {
    /// Magic, version and the two counts.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Gguf {
        Gguf::default()
            .raw(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }
    pub fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u8(self, v: u8) -> Self {
        self.raw(&[v])
    }
    pub fn u32(self, v: u32) -> Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn u64(self, v: u64) -> Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// A key and its value type id; the caller appends the value.
    pub fn kv(self, key: &str, ty: u32) -> Self {
        self.str(key).u32(ty)
    }
    pub fn tensor_info(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut g = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            g = g.u64(d);
        }
        g.u32(ty).u64(offset)
    }
    /// Zero padding up to a multiple of `align`.
    pub fn pad(mut self, align: usize) -> Self {
        self.0.resize(self.0.len().next_multiple_of(align), 0);
        self
    }
}

pub const TYPE_U8: u32 = 0;
pub const TYPE_U32: u32 = 4;
pub const TYPE_BOOL: u32 = 7;
pub const TYPE_STRING: u32 = 8;
pub const TYPE_ARRAY: u32 = 9;
pub const TYPE_U64: u32 = 10;

/// SplitMix64: deterministic, dependency-free randomness for fuzz-style tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
