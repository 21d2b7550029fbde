//! Parsing of everything before the data section: magic, version, metadata and tensor table,
//! plus the checks that make later tensor access safe (every tensor's bytes lie inside the
//! file, offsets are aligned, shapes do not overflow).
//!
//! Layout (GGUF v2/v3, little-endian):
//! `"GGUF" u32:version u64:n_tensors u64:n_kv kv* tensor_info* pad data`
//! with `kv = string:key u32:type value` and
//! `tensor_info = string:name u32:n_dims u64:dims[n_dims] u32:ggml_type u64:offset`.

use std::collections::HashSet;

use crate::cursor::Cursor;
use crate::value::ValueType;
use crate::{GgmlType, GgufError, TensorInfo, Value};

/// ggml's `GGML_MAX_DIMS`: ggml cannot represent tensors with more dimensions.
const MAX_DIMS: u32 = 4;
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest accepted nesting of arrays. Real files nest at most 2 levels; the limit keeps a
/// malicious file from overflowing the stack through recursion.
const MAX_ARRAY_DEPTH: u32 = 16;
/// Fewest bytes a metadata entry can occupy: empty key (u64 length), u32 type, 1-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Fewest bytes a tensor-table entry can occupy: empty name, u32 n_dims = 0, u32 type, u64
/// offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

pub(crate) struct Header {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
}

pub(crate) fn parse(buf: &[u8], file: &str) -> Result<Header, GgufError> {
    let mut c = Cursor::new(buf, file);
    if buf.len() < 4 && b"GGUF".starts_with(buf) {
        return Err(c.truncated("magic \"GGUF\"".into(), 4));
    }
    if c.take(4, &|| "magic".into()).ok() != Some(b"GGUF".as_slice()) {
        return Err(GgufError::BadMagic);
    }
    let version = c.u32(&|| "version".into())?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.u64(&|| "metadata entry count".into())?;

    // Both tables must fit in what is left before anything is allocated for them.
    let min_tables = n_kv
        .checked_mul(MIN_KV_SIZE)
        .and_then(|kv| n_tensors.checked_mul(MIN_TENSOR_INFO_SIZE)?.checked_add(kv));
    if min_tables.is_none_or(|n| n > c.remaining()) {
        return Err(c.truncated(
            format!("{n_kv} metadata entries and {n_tensors} tensor infos"),
            min_tables.unwrap_or(u64::MAX),
        ));
    }

    let metadata = parse_metadata(&mut c, n_kv)?;
    let alignment = alignment(&metadata, file)?;
    let tensors = parse_tensor_infos(&mut c, n_tensors, alignment)?;

    let data_offset = c
        .pos()
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| corrupt(file, format!("general.alignment {alignment} overflows")))?;
    check_tensor_bounds(&tensors, buf.len() as u64, data_offset, file)?;
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

fn corrupt(file: &str, msg: String) -> GgufError {
    GgufError::Corrupt(format!("{file}: {msg}"))
}

fn parse_metadata(c: &mut Cursor, n_kv: u64) -> Result<Vec<(String, Value)>, GgufError> {
    // Capacity is bounded by the remaining-bytes check in `parse`.
    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut seen = HashSet::new();
    for i in 0..n_kv {
        let at = c.pos();
        let key = c.string(&|| format!("key of metadata entry #{i}"))?;
        let key = std::str::from_utf8(key).map_err(|_| {
            corrupt(
                c.file(),
                format!("key of metadata entry #{i} at offset {at} is not UTF-8"),
            )
        })?;
        if !seen.insert(key) {
            return Err(corrupt(
                c.file(),
                format!("duplicate metadata key '{key}' at offset {at}"),
            ));
        }
        let ty_at = c.pos();
        let ty = c.u32(&|| format!("value type of key '{key}'"))?;
        let ty = ValueType::from_id(ty).ok_or_else(|| {
            corrupt(
                c.file(),
                format!("key '{key}': unknown value type id {ty} at offset {ty_at}"),
            )
        })?;
        let value = read_value(c, ty, 0, key)?;
        metadata.push((key.to_string(), value));
    }
    Ok(metadata)
}

fn read_value(c: &mut Cursor, ty: ValueType, depth: u32, key: &str) -> Result<Value, GgufError> {
    let what = || format!("value of key '{key}'");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8(&what)?),
        ValueType::I8 => Value::I8(c.u8(&what)? as i8),
        ValueType::U16 => Value::U16(c.u16(&what)?),
        ValueType::I16 => Value::I16(c.u16(&what)? as i16),
        ValueType::U32 => Value::U32(c.u32(&what)?),
        ValueType::I32 => Value::I32(c.u32(&what)? as i32),
        ValueType::U64 => Value::U64(c.u64(&what)?),
        ValueType::I64 => Value::I64(c.u64(&what)? as i64),
        ValueType::F32 => Value::F32(f32::from_bits(c.u32(&what)?)),
        ValueType::F64 => Value::F64(f64::from_bits(c.u64(&what)?)),
        ValueType::Bool => {
            let at = c.pos();
            match c.u8(&what)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    let msg = format!("key '{key}': bool at offset {at} is {b}, not 0 or 1");
                    return Err(corrupt(c.file(), msg));
                }
            }
        }
        // Lossy: a tokenizer vocabulary with one stray invalid byte sequence should still
        // load (as llama.cpp and candle do); keys and tensor names, which are looked up by
        // name, are checked strictly instead.
        ValueType::String => Value::String(String::from_utf8_lossy(c.string(&what)?).into_owned()),
        ValueType::Array => read_array(c, depth, key)?,
    })
}

fn read_array(c: &mut Cursor, depth: u32, key: &str) -> Result<Value, GgufError> {
    let at = c.pos();
    if depth >= MAX_ARRAY_DEPTH {
        let msg =
            format!("key '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH} at offset {at}");
        return Err(corrupt(c.file(), msg));
    }
    let ty = c.u32(&|| format!("array element type of key '{key}'"))?;
    let ty = ValueType::from_id(ty).ok_or_else(|| {
        corrupt(
            c.file(),
            format!("key '{key}': unknown array element type id {ty} at offset {at}"),
        )
    })?;
    let n = c.u64(&|| format!("array length of key '{key}'"))?;
    // Each element occupies at least `min_size` bytes, so a count that cannot fit in the rest
    // of the file is rejected before `with_capacity` could allocate for it.
    let needed = n.checked_mul(ty.min_size());
    if needed.is_none_or(|needed| needed > c.remaining()) {
        let what = format!("array of {n} {ty:?} values of key '{key}'");
        return Err(c.truncated(what, needed.unwrap_or(u64::MAX)));
    }
    let mut items = Vec::with_capacity(n as usize);
    for _ in 0..n {
        items.push(read_value(c, ty, depth + 1, key)?);
    }
    Ok(Value::Array(items))
}

fn alignment(metadata: &[(String, Value)], file: &str) -> Result<u64, GgufError> {
    let Some((_, v)) = metadata.iter().find(|(k, _)| k == "general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match v.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => Err(corrupt(
            file,
            format!("general.alignment is {v:?}; it must be a power-of-two integer (usually 32)"),
        )),
    }
}

fn parse_tensor_infos(
    c: &mut Cursor,
    n: u64,
    alignment: u64,
) -> Result<Vec<TensorInfo>, GgufError> {
    if n.checked_mul(MIN_TENSOR_INFO_SIZE)
        .is_none_or(|b| b > c.remaining())
    {
        let what = format!("{n} tensor infos");
        return Err(c.truncated(what, n.saturating_mul(MIN_TENSOR_INFO_SIZE)));
    }
    let mut tensors = Vec::with_capacity(n as usize);
    let mut seen = HashSet::new();
    for i in 0..n {
        let at = c.pos();
        let name = c.string(&|| format!("name of tensor #{i}"))?;
        let name = std::str::from_utf8(name).map_err(|_| {
            corrupt(
                c.file(),
                format!("name of tensor #{i} at offset {at} is not UTF-8"),
            )
        })?;
        if !seen.insert(name) {
            return Err(corrupt(
                c.file(),
                format!("duplicate tensor name '{name}' at offset {at}"),
            ));
        }
        let n_dims = c.u32(&|| format!("n_dims of tensor '{name}'"))?;
        if n_dims > MAX_DIMS {
            let msg =
                format!("tensor '{name}' has {n_dims} dimensions (ggml allows at most {MAX_DIMS})");
            return Err(corrupt(c.file(), msg));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let dim = c.u64(&|| format!("dim {d} of tensor '{name}'"))?;
            // ggml stores dims as int64_t; anything above that is a corrupt length.
            if dim > i64::MAX as u64 {
                return Err(corrupt(
                    c.file(),
                    format!("tensor '{name}': dim {d} is {dim}"),
                ));
            }
            dims.push(dim);
        }
        let ggml_type = GgmlType::from_id(c.u32(&|| format!("type of tensor '{name}'"))?);
        let offset_at = c.pos();
        let offset = c.u64(&|| format!("data offset of tensor '{name}'"))?;
        if !offset.is_multiple_of(alignment) {
            let msg = format!(
                "tensor '{name}': data offset {offset} (stored at file offset {offset_at}) is not \
                 a multiple of the alignment {alignment}"
            );
            return Err(corrupt(c.file(), msg));
        }
        let info = TensorInfo {
            name: name.to_string(),
            dims,
            ggml_type,
            offset,
        };
        if info.checked_n_elements().is_none() {
            let msg = format!(
                "tensor '{name}': dims {:?} multiply to more than 2^64",
                info.dims
            );
            return Err(corrupt(c.file(), msg));
        }
        tensors.push(info);
    }
    Ok(tensors)
}

/// Every tensor whose type has a known size must lie inside the file. Tensors of unknown type
/// ids are kept (their metadata is still useful) but `tensor_bytes` refuses them.
fn check_tensor_bounds(
    tensors: &[TensorInfo],
    file_len: u64,
    data_offset: u64,
    file: &str,
) -> Result<(), GgufError> {
    for t in tensors {
        let n_bytes = match t.n_bytes() {
            Ok(n) => n,
            Err(GgufError::UnsupportedType { .. }) => continue,
            Err(GgufError::Corrupt(msg)) => return Err(corrupt(file, msg)),
            Err(e) => return Err(e),
        };
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(_), Some(end)) if end <= file_len => {}
            (start, _) => {
                let start = start.unwrap_or(u64::MAX);
                return Err(GgufError::Truncated {
                    file: file.to_string(),
                    what: format!("data of tensor '{}' ({} {:?})", t.name, t.ggml_type, t.dims),
                    offset: start,
                    needed: n_bytes,
                    available: file_len.saturating_sub(start),
                });
            }
        }
    }
    Ok(())
}
