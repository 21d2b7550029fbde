//! Broken input never panics, never over-allocates, and is reported as the right error:
//! truncation at every header offset, bit flips, and hand-made files with absurd fields.

mod common;

use common::*;
use ferrum_gguf::{GgmlType, GgufError, GgufFile, TensorInfo, Value};

/// If the (possibly damaged) file parses, every tensor it declares must be readable: open()
/// has validated the table, so later access may not fail for a known type, nor panic.
fn exercise(f: &GgufFile) {
    for t in &f.tensors {
        let bytes = t.n_bytes().map(|_| f.tensor_bytes(t));
        if let Ok(bytes) = bytes {
            bytes.unwrap_or_else(|e| panic!("{}: tensor_bytes after successful open: {e}", t.name));
        }
        if t.ggml_type.can_dequantize() {
            let v = f
                .dequantize(t)
                .unwrap_or_else(|e| panic!("{}: dequantize: {e}", t.name));
            assert_eq!(v.len() as u64, t.n_elements());
        }
    }
}

/// End of the last tensor's data: a prefix shorter than this cannot be a valid file.
fn end_of_data(f: &GgufFile) -> usize {
    f.tensors
        .iter()
        .map(|t| (f.data_offset() + t.offset + t.n_bytes().unwrap()) as usize)
        .max()
        .unwrap()
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = fixture_bytes();
    let full = GgufFile::from_bytes(bytes.clone()).unwrap();
    let header_end = full.data_offset() as usize;
    let data_end = end_of_data(&full);
    // Every prefix of the header region, then every 97th byte of the data region.
    let cuts = (0..header_end)
        .chain((header_end..data_end).step_by(97))
        .chain([data_end - 1]);
    for len in cuts {
        match GgufFile::from_bytes(bytes[..len].to_vec()) {
            Err(GgufError::Truncated { .. }) => {}
            other => panic!("prefix of {len} bytes: expected Truncated, got {other:?}"),
        }
    }
    // Only trailing padding after the last tensor may be cut.
    for len in data_end..=bytes.len() {
        exercise(&GgufFile::from_bytes(bytes[..len].to_vec()).unwrap());
    }
}

#[test]
fn truncation_message_is_actionable() {
    let bytes = fixture_bytes();
    let err = GgufFile::from_bytes(bytes[..bytes.len() - 2000].to_vec()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("<memory>") && msg.contains("tensor '") && msg.contains("offset"),
        "{msg}"
    );
}

#[test]
fn every_single_bit_flip_in_the_header_is_handled() {
    let bytes = fixture_bytes();
    let header_end = GgufFile::from_bytes(bytes.clone()).unwrap().data_offset() as usize;
    let (mut ok, mut err) = (0, 0);
    for bit in 0..header_end * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        match GgufFile::from_bytes(b) {
            Ok(f) => {
                // Only bytes that carry data (values, dims, names) can flip into another
                // valid file; the magic never can, the version only from 3 to 2.
                assert!(bit / 8 >= 4, "flip of bit {bit} in the magic accepted");
                assert!(
                    bit / 8 >= 8 || f.version == 2,
                    "bit {bit}: version {}",
                    f.version
                );
                exercise(&f);
                ok += 1;
            }
            Err(e) => {
                match bit / 8 {
                    0..4 => assert!(matches!(e, GgufError::BadMagic), "bit {bit}: {e:?}"),
                    4..8 => assert!(
                        matches!(e, GgufError::UnsupportedVersion(_)),
                        "bit {bit}: {e:?}"
                    ),
                    _ => {}
                }
                err += 1;
            }
        }
    }
    // Sanity check that the test exercises both outcomes.
    assert!(ok > 100 && err > 100, "ok {ok}, err {err}");
}

#[test]
fn random_bit_flips_anywhere_never_panic() {
    let bytes = fixture_bytes();
    let mut rng = Rng(0x5EED_0001);
    for _ in 0..4000 {
        let mut b = bytes.clone();
        // One to three flips per file, anywhere (tensor data included).
        for _ in 0..1 + rng.below(3) {
            let bit = rng.below(b.len() * 8);
            b[bit / 8] ^= 1 << (bit % 8);
        }
        if let Ok(f) = GgufFile::from_bytes(b) {
            exercise(&f);
        }
    }
}

#[test]
fn random_garbage_after_a_valid_prefix_never_panics() {
    let bytes = fixture_bytes();
    let mut rng = Rng(42);
    for _ in 0..3000 {
        // Keep a random-length valid prefix, then random bytes (often absurd counts/lengths).
        let keep = rng.below(400);
        let mut b = bytes[..keep].to_vec();
        let extra = rng.below(300);
        b.extend((0..extra).map(|_| rng.next() as u8));
        if let Ok(f) = GgufFile::from_bytes(b) {
            exercise(&f);
        }
    }
}

fn parse_err(g: Gguf) -> GgufError {
    match GgufFile::from_bytes(g.0) {
        Err(e) => e,
        Ok(f) => panic!("expected an error, parsed {f:?}"),
    }
}

fn is_truncated(e: &GgufError) -> bool {
    matches!(e, GgufError::Truncated { .. })
}

fn is_corrupt(e: &GgufError, needle: &str) -> bool {
    matches!(e, GgufError::Corrupt(m) if m.contains(needle))
}

#[test]
fn magic_and_version() {
    assert!(is_truncated(&GgufFile::from_bytes(vec![]).unwrap_err()));
    assert!(is_truncated(
        &GgufFile::from_bytes(b"GGU".to_vec()).unwrap_err()
    ));
    assert!(matches!(
        GgufFile::from_bytes(b"GGML\x03\0\0\0".to_vec()),
        Err(GgufError::BadMagic)
    ));
    assert!(matches!(
        GgufFile::from_bytes(b"xy".to_vec()),
        Err(GgufError::BadMagic)
    ));
    assert!(matches!(
        parse_err(Gguf::header(1, 0, 0)),
        GgufError::UnsupportedVersion(1)
    ));
    assert!(matches!(
        parse_err(Gguf::header(4, 0, 0)),
        GgufError::UnsupportedVersion(4)
    ));
    let big_endian = parse_err(Gguf::header(3u32.swap_bytes(), 0, 0));
    assert!(
        big_endian.to_string().contains("big-endian"),
        "{big_endian}"
    );
    // v2 and v3 share the layout; an empty file of either is valid.
    for version in [2, 3] {
        let f = GgufFile::from_bytes(Gguf::header(version, 0, 0).0).unwrap();
        assert_eq!(
            (f.version, f.metadata.len(), f.tensors.len()),
            (version, 0, 0)
        );
    }
}

#[test]
fn absurd_counts_and_lengths_are_rejected_before_allocating() {
    // 2^60 metadata entries or tensors: rejected against the remaining bytes.
    assert!(is_truncated(&parse_err(Gguf::header(3, 0, 1 << 60))));
    assert!(is_truncated(&parse_err(Gguf::header(3, 1 << 60, 0))));
    assert!(is_truncated(&parse_err(Gguf::header(
        3,
        u64::MAX,
        u64::MAX
    ))));
    // A key or string value claiming 2^60 bytes.
    assert!(is_truncated(&parse_err(
        Gguf::header(3, 0, 1).u64(1 << 60).raw(&[0; 64])
    )));
    let long_value = Gguf::header(3, 0, 1)
        .kv("k", TYPE_STRING)
        .u64(1 << 60)
        .raw(&[0; 64]);
    assert!(is_truncated(&parse_err(long_value)));
    // Arrays of 2^60 u8, 2^60 strings, u64::MAX u64s (count * size overflows).
    for (ty, n) in [
        (TYPE_U8, 1u64 << 60),
        (TYPE_STRING, 1 << 60),
        (TYPE_U64, u64::MAX),
        (TYPE_ARRAY, 1 << 60),
    ] {
        let g = Gguf::header(3, 0, 1)
            .kv("k", TYPE_ARRAY)
            .u32(ty)
            .u64(n)
            .raw(&[0; 64]);
        let e = parse_err(g);
        assert!(is_truncated(&e), "array of {n} x type {ty}: {e:?}");
        assert!(e.to_string().contains("key 'k'"), "{e}");
    }
    // An array count that fits byte-wise but whose elements then run out.
    let g = Gguf::header(3, 0, 1)
        .kv("k", TYPE_ARRAY)
        .u32(TYPE_STRING)
        .u64(3)
        .u64(1)
        .raw(b"a")
        .u64(100);
    assert!(is_truncated(&parse_err(g)));
}

#[test]
fn malformed_values() {
    let e = parse_err(Gguf::header(3, 0, 1).kv("k", 13).u32(0));
    assert!(is_corrupt(&e, "unknown value type id 13"), "{e}");
    let e = parse_err(Gguf::header(3, 0, 1).kv("k", TYPE_ARRAY).u32(99).u64(0));
    assert!(is_corrupt(&e, "unknown array element type id 99"), "{e}");
    let e = parse_err(Gguf::header(3, 0, 1).kv("flag", TYPE_BOOL).u8(2));
    assert!(is_corrupt(&e, "'flag'"), "{e}");
    let e = parse_err(
        Gguf::header(3, 0, 2)
            .kv("k", TYPE_U8)
            .u8(1)
            .kv("k", TYPE_U8)
            .u8(2),
    );
    assert!(is_corrupt(&e, "duplicate metadata key 'k'"), "{e}");
    let e = parse_err(
        Gguf::header(3, 0, 1)
            .u64(2)
            .raw(&[0xFF, 0xFE])
            .u32(TYPE_U8)
            .u8(0),
    );
    assert!(is_corrupt(&e, "not UTF-8"), "{e}");
    // Arrays nested 10_000 deep: an error, not a stack overflow.
    let mut g = Gguf::header(3, 0, 1).kv("deep", TYPE_ARRAY);
    for _ in 0..10_000 {
        g = g.u32(TYPE_ARRAY).u64(1);
    }
    let e = parse_err(g.u32(TYPE_U8).u64(0));
    assert!(is_corrupt(&e, "nested deeper"), "{e}");
}

#[test]
fn lenient_but_well_formed_values_parse() {
    // Invalid UTF-8 inside a string *value* (seen in real vocabularies) is replaced, not fatal;
    // an empty array is valid.
    let g = Gguf::header(3, 0, 2)
        .kv("s", TYPE_STRING)
        .u64(3)
        .raw(&[b'a', 0xFF, b'b'])
        .kv("empty", TYPE_ARRAY)
        .u32(TYPE_U32)
        .u64(0);
    let f = GgufFile::from_bytes(g.0).unwrap();
    assert_eq!(f.get_str("s"), Some("a\u{FFFD}b"));
    assert_eq!(f.get("empty"), Some(&Value::Array(vec![])));
}

/// A file with `general.alignment` = `align` (if given), one tensor info and `data` after it.
fn one_tensor(align: Option<u32>, dims: &[u64], ty: u32, offset: u64, data: &[u8]) -> Gguf {
    let mut g = Gguf::header(3, 1, u64::from(align.is_some()));
    if let Some(a) = align {
        g = g.kv("general.alignment", TYPE_U32).u32(a);
    }
    let pad = align.unwrap_or(32).max(1) as usize;
    g.tensor_info("t", dims, ty, offset).pad(pad).raw(data)
}

#[test]
fn malformed_tensor_infos() {
    let data = [0u8; 256];
    let e = parse_err(one_tensor(None, &[1, 1, 1, 1, 1], 0, 0, &data));
    assert!(is_corrupt(&e, "5 dimensions"), "{e}");
    let e = parse_err(one_tensor(None, &[1 << 32, 1 << 32, 2], 0, 0, &data));
    assert!(is_corrupt(&e, "more than 2^64"), "{e}");
    let e = parse_err(one_tensor(None, &[u64::MAX], 0, 0, &data));
    assert!(is_corrupt(&e, "dim 0"), "{e}");
    // Product fits in u64 but the byte size does not.
    let e = parse_err(one_tensor(None, &[1 << 62, 2], 0, 0, &data));
    assert!(
        matches!(e, GgufError::Corrupt(_) | GgufError::Truncated { .. }),
        "{e:?}"
    );
    let e = parse_err(one_tensor(None, &[8], 0, 8, &data));
    assert!(is_corrupt(&e, "not a multiple of the alignment 32"), "{e}");
    let e = parse_err(one_tensor(None, &[31], GgmlType::Q8_0.id(), 0, &data));
    assert!(is_corrupt(&e, "block size 32"), "{e}");
    // Offset and size past the end, and offset + size overflowing.
    let e = parse_err(one_tensor(None, &[64], 0, 32, &data));
    assert!(
        is_truncated(&e) && e.to_string().contains("tensor 't'"),
        "{e}"
    );
    let e = parse_err(one_tensor(None, &[1 << 20], 0, 0, &data));
    assert!(is_truncated(&e), "{e}");
    let e = parse_err(one_tensor(None, &[64], 0, u64::MAX - 31, &data));
    assert!(is_truncated(&e), "{e}");
    // Duplicate tensor names.
    let g = Gguf::header(3, 2, 0)
        .tensor_info("t", &[1], 0, 0)
        .tensor_info("t", &[1], 0, 32)
        .pad(32)
        .raw(&data);
    assert!(is_corrupt(&parse_err(g), "duplicate tensor name 't'"));
}

#[test]
fn bad_alignment_values() {
    for a in [0u32, 3, 48] {
        let e = parse_err(one_tensor(Some(a), &[4], 0, 0, &[0; 64]));
        assert!(is_corrupt(&e, "general.alignment"), "alignment {a}: {e}");
    }
    let g = Gguf::header(3, 0, 1)
        .kv("general.alignment", TYPE_STRING)
        .str("32");
    assert!(is_corrupt(&parse_err(g), "general.alignment"));
}

#[test]
fn default_and_custom_alignment_place_the_data_section() {
    let values: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    for align in [None, Some(8), Some(128)] {
        let g = one_tensor(align, &[4], 0, 0, &values);
        let f = GgufFile::from_bytes(g.0).unwrap();
        assert_eq!(f.alignment(), u64::from(align.unwrap_or(32)));
        assert_eq!(f.data_offset() % f.alignment(), 0);
        assert_eq!(
            f.dequantize(f.tensor("t").unwrap()).unwrap(),
            [1.5, -2.0, 0.25, 8.0]
        );
    }
}

#[test]
fn unknown_type_ids_open_but_are_refused_on_access() {
    let f = GgufFile::from_bytes(one_tensor(None, &[4], 99, 0, &[0; 32]).0).unwrap();
    let t = f.tensor("t").unwrap();
    assert_eq!(t.ggml_type, GgmlType::Other(99));
    for e in [f.tensor_bytes(t).unwrap_err(), f.dequantize(t).unwrap_err()] {
        assert!(
            matches!(&e, GgufError::UnsupportedType { tensor, ty } if tensor == "t" && ty.contains("99")),
            "{e:?}"
        );
    }
}

#[test]
fn hand_built_tensor_infos_are_bounds_checked() {
    let f = GgufFile::from_bytes(one_tensor(None, &[4], 0, 0, &[0; 32]).0).unwrap();
    let mut t = TensorInfo {
        name: "fake".into(),
        dims: vec![1 << 20],
        ggml_type: GgmlType::F32,
        offset: 0,
    };
    assert!(is_truncated(&f.tensor_bytes(&t).unwrap_err()));
    assert!(is_truncated(&f.dequantize(&t).unwrap_err()));
    t.dims = vec![4];
    t.offset = u64::MAX;
    assert!(is_truncated(&f.tensor_bytes(&t).unwrap_err()));
    t.dims = vec![u64::MAX, 2];
    assert_eq!(t.n_elements(), u64::MAX, "saturates");
    assert!(matches!(f.tensor_bytes(&t), Err(GgufError::Corrupt(_))));
}
