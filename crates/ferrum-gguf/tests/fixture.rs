//! The gguf-py-written fixture (tests/fixtures/make_fixtures.py) read back: metadata of every
//! value type, the tensor table, and dequantized values against gguf-py's.

mod common;

use common::*;
use ferrum_gguf::{GgmlType, GgufError, GgufFile, Value};

fn fixture() -> GgufFile {
    GgufFile::from_bytes(fixture_bytes()).expect("fixture.gguf parses")
}

#[test]
fn metadata_values_match_what_the_script_wrote() {
    use Value::*;
    let f = fixture();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment(), 64);
    let s = |v: &str| String(v.to_string());
    let expected: Vec<(&str, Value)> = vec![
        ("general.architecture", s("testarch")),
        ("general.alignment", U32(64)),
        ("test.u8", U8(200)),
        ("test.i8", I8(-100)),
        ("test.u16", U16(60000)),
        ("test.i16", I16(-30000)),
        ("test.u32", U32(4_000_000_000)),
        ("test.i32", I32(-2_000_000_000)),
        ("test.u64", U64((1 << 63) + 5)),
        ("test.i64", I64(-(1 << 62) - 7)),
        ("test.f32", F32(0.1)),
        ("test.f64", F64(-1.5e300)),
        ("test.bool_true", Bool(true)),
        ("test.bool_false", Bool(false)),
        ("test.string", s("héllo, wörld ✓ 日本")),
        ("test.empty_string", s("")),
        ("test.array.u8", Array(vec![U8(0), U8(1), U8(255)])),
        (
            "test.array.i16",
            Array(vec![I16(-32768), I16(0), I16(32767)]),
        ),
        ("test.array.i32", Array(vec![I32(1), I32(-2), I32(3)])),
        ("test.array.u64", Array(vec![U64(0), U64(u64::MAX)])),
        ("test.array.f64", Array(vec![F64(0.25), F64(-2.0)])),
        (
            "test.array.f32",
            Array(vec![F32(0.5), F32(-1.25), F32(3.0e-38)]),
        ),
        (
            "test.array.bool",
            Array(vec![Bool(true), Bool(false), Bool(true)]),
        ),
        (
            "test.array.str",
            Array(vec![s("a"), s("bé"), s(""), s("tokens ▁with spaces")]),
        ),
        (
            "test.array.nested_i32",
            Array(vec![Array(vec![I32(1), I32(2)]), Array(vec![I32(3)])]),
        ),
        (
            "test.array.nested_str",
            Array(vec![Array(vec![s("x"), s("y")]), Array(vec![s("z")])]),
        ),
        (
            "test.array.nested_mixed",
            Array(vec![
                Array(vec![Array(vec![I32(7)])]),
                Array(vec![Array(vec![s("w")])]),
            ]),
        ),
    ];
    let got: Vec<(&str, &Value)> = f.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let want: Vec<(&str, &Value)> = expected.iter().map(|(k, v)| (*k, v)).collect();
    assert_eq!(got, want, "metadata in file order");
}

#[test]
fn typed_getters_convert_compatible_types_only() {
    let f = fixture();
    assert_eq!(f.architecture(), Some("testarch"));
    assert_eq!(f.get_str("test.string"), Some("héllo, wörld ✓ 日本"));
    assert_eq!(f.get_str("test.u8"), None);
    assert_eq!(f.get_u64("test.u8"), Some(200));
    assert_eq!(f.get_u64("test.u32"), Some(4_000_000_000));
    assert_eq!(f.get_u64("test.u64"), Some((1 << 63) + 5));
    assert_eq!(f.get_u64("test.i8"), None, "negative");
    assert_eq!(f.get_u64("test.f32"), None, "float");
    assert_eq!(
        f.get("test.i64").and_then(Value::as_i64),
        Some(-(1 << 62) - 7)
    );
    assert_eq!(
        f.get("test.u64").and_then(Value::as_i64),
        None,
        "above i64::MAX"
    );
    assert_eq!(f.get_f64("test.f32"), Some(0.1f32 as f64));
    assert_eq!(f.get_f64("test.f64"), Some(-1.5e300));
    assert_eq!(f.get_f64("test.i32"), Some(-2e9));
    assert_eq!(f.get_f64("test.string"), None);
    assert_eq!(f.get_bool("test.bool_true"), Some(true));
    assert_eq!(f.get_bool("test.u8"), None);
    assert_eq!(
        f.get_str_array("test.array.str"),
        Some(vec!["a", "bé", "", "tokens ▁with spaces"])
    );
    assert_eq!(f.get_str_array("test.array.i32"), None);
    assert_eq!(
        f.get_array("test.array.nested_i32").map(<[Value]>::len),
        Some(2)
    );
    assert_eq!(f.get("no.such.key"), None);
    assert_eq!(f.get_u64("no.such.key"), None);
}

#[test]
fn tensor_table_matches_gguf_py() {
    let f = fixture();
    let expected = expected_tensors();
    let names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, want);
    for e in &expected {
        let t = f.tensor(&e.name).unwrap();
        assert_eq!(t.ggml_type, ggml_type_named(&e.ty), "{}", e.name);
        assert_eq!(t.ggml_type.name(), e.ty);
        assert_eq!(t.dims, e.dims, "{} dims (ggml order)", e.name);
        assert_eq!(
            t.offset % 64,
            0,
            "{} offset aligned to general.alignment",
            e.name
        );
        let bytes = f.tensor_bytes(t).unwrap();
        assert_eq!(bytes.len() as u64, t.n_bytes().unwrap());
    }
    assert_eq!(f.tensor("f32_3d").unwrap().dims, [16, 3, 2]);
    assert_eq!(f.tensor("q8_0_4d").unwrap().dims, [64, 2, 2, 2]);
    assert_eq!(f.tensor("q4_k").unwrap().n_elements(), 2048);
    assert_eq!(f.tensor("q4_k").unwrap().n_bytes().unwrap(), 8 * 144);
    assert!(f.tensor("missing").is_none());
    assert_eq!(f.data_offset() % 64, 0);
}

#[test]
fn dequantized_values_equal_gguf_py() {
    let f = fixture();
    let mut checked = Vec::new();
    for e in expected_tensors() {
        let Some(want) = &e.values else { continue };
        let got = f.dequantize(f.tensor(&e.name).unwrap()).unwrap();
        // Bit-exact for every type: the kernels keep ggml's operation order.
        assert_same_f32(&e.name, &got, want);
        checked.push(e.ty);
    }
    checked.sort();
    checked.dedup();
    let all = [
        "BF16", "F16", "F32", "Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K",
        "Q6_K", "Q8_0",
    ];
    assert_eq!(checked, all);
}

#[test]
fn free_dequantize_equals_file_dequantize() {
    let f = fixture();
    let t = f.tensor("q6_k").unwrap();
    let mut out = vec![0.0; t.n_elements() as usize];
    ferrum_gguf::dequantize(t.ggml_type, f.tensor_bytes(t).unwrap(), &mut out).unwrap();
    assert_eq!(out, f.dequantize(t).unwrap());
}

#[test]
fn unsupported_types_name_tensor_and_type() {
    let f = fixture();
    for (name, ty) in [("iq4_nl", "IQ4_NL"), ("i32", "I32")] {
        let t = f.tensor(name).unwrap();
        assert_eq!(t.ggml_type.name(), ty);
        assert!(matches!(t.ggml_type, GgmlType::Other(_)));
        // The raw bytes are still available...
        assert_eq!(
            f.tensor_bytes(t).unwrap().len() as u64,
            t.n_bytes().unwrap()
        );
        // ...but dequantization is refused with a message naming both.
        match f.dequantize(t) {
            Err(e @ GgufError::UnsupportedType { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(name) && msg.contains(ty), "{msg}");
            }
            other => panic!("{name}: expected UnsupportedType, got {other:?}"),
        }
    }
    let i32_bytes = f.tensor_bytes(f.tensor("i32").unwrap()).unwrap();
    let ints: Vec<i32> = i32_bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(ints, (-8..8).collect::<Vec<_>>());
}

#[test]
fn open_via_mmap_equals_from_bytes() {
    let path = fixture_dir().join("fixture.gguf");
    let mapped = GgufFile::open(&path).unwrap();
    let owned = fixture();
    assert_eq!(mapped.metadata, owned.metadata);
    assert_eq!(mapped.tensors.len(), owned.tensors.len());
    for (a, b) in mapped.tensors.iter().zip(&owned.tensors) {
        assert_eq!(
            (&a.name, &a.dims, a.ggml_type, a.offset),
            (&b.name, &b.dims, b.ggml_type, b.offset)
        );
        assert_eq!(
            mapped.tensor_bytes(a).unwrap(),
            owned.tensor_bytes(b).unwrap()
        );
    }
    let dbg = format!("{mapped:?}");
    assert!(
        dbg.contains("fixture.gguf") && dbg.contains("tensors: 17"),
        "{dbg}"
    );
}

#[test]
fn open_missing_file_names_the_path() {
    let path = fixture_dir().join("does-not-exist.gguf");
    let err = GgufFile::open(&path).unwrap_err();
    assert!(matches!(err, GgufError::Io(_)));
    assert!(err.to_string().contains("does-not-exist.gguf"), "{err}");
}

#[test]
fn file_and_error_can_cross_threads() {
    // Loaders share one GgufFile (mmap included) across rayon workers; errors go into anyhow.
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<GgufFile>();
    assert_send_sync::<GgufError>();
}
