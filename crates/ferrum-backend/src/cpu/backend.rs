//! The CPU backend: the [`Backend`] traits over the ops of this module, f32 activations in host
//! vectors. It is the reference: batch-invariant, and the numerics every other backend is
//! measured against.

use super::{
    AttnSeq, AttnShape, Fp8Rows, Rope, Weight, add_inplace, matmul_t, paged_attention,
    paged_attention_rows, rms_norm_rows, rms_norm_rows_inplace, silu_mul,
};
use crate::backend::{
    AttnDims, Backend, KvDtype, KvSpec, MemInfo, MoeDims, RopeConfig, StepMeta, WeightBytes,
    Weights,
};
use crate::cpu::moe::{Expert, MoeScratch, moe_experts, route};
use crate::host::{HostDtype, HostLinear, HostTensor};
use anyhow::{Result, bail};
use ferrum_gguf::GgmlType;
use std::sync::Arc;

#[derive(Default)]
pub struct CpuBackend {
    step: StepMeta,
}

/// Every layer's K and V in one allocation, laid out `[layer][K | V][slot][kv_dim]`: one
/// zeroed allocation is one anonymous mapping, so the cache's resident size is one number.
/// f32 (exact), or FP8 e4m3fn with one K and one V scale per layer (`--kv-cache-dtype fp8`).
pub struct CpuKv {
    data: KvData,
    /// Values of one layer's K (and of its V).
    half: usize,
    pub block_size: usize,
    pub kv_dim: usize,
    /// Per layer `(k_scale, v_scale)` of an FP8 cache: stored = value / scale.
    scales: Vec<(f32, f32)>,
}

enum KvData {
    F32(Vec<f32>),
    Fp8(Vec<u8>),
}

/// `layer`'s K and V halves of a `[layer][K | V]` buffer.
fn halves<T>(data: &[T], half: usize, layer: usize) -> (&[T], &[T]) {
    data[2 * layer * half..2 * (layer + 1) * half].split_at(half)
}

fn halves_mut<T>(data: &mut [T], half: usize, layer: usize) -> (&mut [T], &mut [T]) {
    data[2 * layer * half..2 * (layer + 1) * half].split_at_mut(half)
}

pub struct CpuMoeScratch {
    ids: Vec<u32>,
    weights: Vec<f32>,
    inner: MoeScratch,
}

impl CpuBackend {
    pub fn new() -> CpuBackend {
        CpuBackend::default()
    }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// How the CPU keeps a dense tensor of this type: bf16 stays bf16 (exact widening per row), ggml
/// Q4_1/Q8_0 stay packed for the 8-bit-activation matmul, other block types stay packed and are
/// decoded per row (bit-identical to dequantizing at load), f32/f16 become f32.
enum Keep {
    F32,
    BF16,
    Packed,
}

fn keep(dtype: HostDtype) -> Result<Keep> {
    Ok(match dtype {
        HostDtype::F32 | HostDtype::F16 => Keep::F32,
        HostDtype::BF16 | HostDtype::Gguf(GgmlType::BF16) => Keep::BF16,
        HostDtype::Gguf(GgmlType::F32 | GgmlType::F16) => Keep::F32,
        HostDtype::Gguf(t) if t.can_dequantize() => Keep::Packed,
        other => bail!("the CPU backend cannot run {other} weights"),
    })
}

impl WeightBytes for CpuBackend {
    fn linear_bytes(&self, w: &HostLinear<'_>) -> Result<usize> {
        match w {
            HostLinear::Dense(t) => Ok(match keep(t.dtype)? {
                Keep::F32 => 4 * t.numel(),
                Keep::BF16 => 2 * t.numel(),
                Keep::Packed => t.stored_bytes()?,
            }),
            HostLinear::Fp8Block {
                weight, scale_inv, ..
            } => Ok(weight.numel() + 4 * scale_inv.numel()),
        }
    }
}

impl Weights for CpuBackend {
    type Weight = Weight;
    type Vector = Vec<f32>;
    type Experts = Vec<Expert>;

    fn backend_name(&self) -> &'static str {
        "cpu"
    }

    fn upload_linear(&self, w: HostLinear<'_>) -> Result<Weight> {
        let (rows, k) = w.dims();
        match w {
            HostLinear::Dense(t) => {
                if t.dtype == HostDtype::F8E4M3 {
                    bail!(
                        "`{}` is fp8 e4m3 without `weight_scale_inv`; the CPU backend runs block-scaled fp8 only",
                        t.name
                    );
                }
                Ok(match keep(t.dtype)? {
                    Keep::F32 if t.dtype == HostDtype::F32 => Weight::f32(rows, k, f32s(&t.bytes)),
                    Keep::F32 => Weight::f32(rows, k, t.to_f32()?),
                    Keep::BF16 => Weight::bf16(rows, k, u16s(&t.bytes)),
                    Keep::Packed => {
                        let HostDtype::Gguf(ty) = t.dtype else {
                            unreachable!("only GGUF types are kept packed")
                        };
                        let bytes = t.bytes.into_owned();
                        match ty {
                            GgmlType::Q4_1 => Weight::q4_1(rows, k, bytes),
                            GgmlType::Q8_0 => Weight::q8_0(rows, k, bytes),
                            _ => {
                                let decode = Arc::new(move |src: &[u8], dst: &mut [f32]| {
                                    ferrum_gguf::dequantize(ty, src, dst)
                                        .expect("row sizes were checked at load")
                                });
                                Weight::packed(rows, k, bytes, decode)
                            }
                        }
                    }
                })
            }
            HostLinear::Fp8Block {
                weight,
                scale_inv,
                block,
            } => {
                let scales = scale_inv.to_f32()?;
                Weight::fp8_block(rows, k, weight.bytes.into_owned(), scales, block.0, block.1)
                    .map_err(|e| anyhow::anyhow!("`{}`: {e}", weight.name))
            }
        }
    }

    fn upload_vector(&self, t: HostTensor<'_>) -> Result<Vec<f32>> {
        t.to_f32()
    }

    fn stack(&self, parts: Vec<Weight>) -> Result<Weight> {
        let mut it = parts.into_iter();
        let Some(first) = it.next() else {
            bail!("nothing to stack")
        };
        let k = first.k;
        it.try_fold(first, |acc, w| {
            if w.k != k {
                bail!("stacked weights have rows of {k} and {} values", w.k);
            }
            Ok(acc.stack(w))
        })
    }

    /// The reference runs a shared expert as the model's own MLP: it comes back.
    fn experts(
        &self,
        routed: Vec<(Weight, Weight)>,
        shared: Option<(Weight, Weight)>,
    ) -> Result<(Vec<Expert>, Option<(Weight, Weight)>)> {
        let experts = routed
            .into_iter()
            .map(|(gate_up, down)| Expert { gate_up, down })
            .collect();
        Ok((experts, shared))
    }
}

/// Memory the kernel would still give us (`MemAvailable`), and the total.
fn meminfo() -> MemInfo {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal:").unwrap_or(u64::MAX);
    MemInfo {
        total,
        available: field("MemAvailable:").unwrap_or(total),
    }
}

impl Backend for CpuBackend {
    type Buf = Vec<f32>;
    type Kv = CpuKv;
    type Rope = Rope;
    type MoeScratch = CpuMoeScratch;

    fn device_name(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }

    fn memory(&self) -> MemInfo {
        meminfo()
    }

    /// vLLM's CPU default (VLLM_CPU_KVCACHE_SPACE = 4 GiB); the cache is allocated zeroed, so
    /// untouched blocks cost no resident memory.
    fn kv_cache_budget(&self, gpu_memory_utilization: Option<f64>) -> Result<u64> {
        if gpu_memory_utilization.is_some() {
            bail!(
                "--gpu-memory-utilization sizes the KV cache on a GPU; this runs on the CPU: use --kv-cache-memory-bytes"
            );
        }
        Ok(4 << 30)
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(crate::host::committed_zeros(len))
    }

    fn alloc_kv(&self, spec: &KvSpec) -> Result<CpuKv> {
        // zeroed allocation: pages are committed only as blocks get used
        let half = spec.num_blocks * spec.block_size * spec.kv_dim;
        let n = 2 * spec.num_layers * half;
        let data = match spec.dtype {
            KvDtype::F32 => KvData::F32(vec![0.0; n]),
            KvDtype::Fp8E4M3 => KvData::Fp8(vec![0; n]),
            other => bail!(
                "the CPU backend keeps the KV cache in f32 or fp8 (e4m3); --kv-cache-dtype {other:?} is not supported on it"
            ),
        };
        Ok(CpuKv {
            data,
            half,
            block_size: spec.block_size,
            kv_dim: spec.kv_dim,
            scales: vec![(1.0, 1.0); spec.num_layers],
        })
    }

    fn set_kv_scales(
        &self,
        kv: &mut CpuKv,
        layer: usize,
        k_scale: f32,
        v_scale: f32,
    ) -> Result<()> {
        if !matches!(kv.data, KvData::Fp8(_)) {
            bail!("KV-cache scales apply to an fp8 cache only");
        }
        if !(k_scale.is_finite() && k_scale > 0.0 && v_scale.is_finite() && v_scale > 0.0) {
            bail!(
                "layer {layer}: KV-cache scales must be positive and finite, got k {k_scale}, v {v_scale}"
            );
        }
        kv.scales[layer] = (k_scale, v_scale);
        Ok(())
    }

    fn rope(&self, r: &RopeConfig) -> Result<Rope> {
        r.validate()?;
        Ok(Rope::new(
            r.head_dim,
            r.rotary_dim,
            r.theta,
            &r.scaling,
            r.style,
        ))
    }

    fn moe_scratch(&self, max_tokens: usize, d: &MoeDims) -> Result<CpuMoeScratch> {
        Ok(CpuMoeScratch {
            ids: vec![0; max_tokens * d.top_k],
            weights: vec![0.0; max_tokens * d.top_k],
            inner: MoeScratch::new(max_tokens, d.top_k, d.hidden, d.inter),
        })
    }

    fn begin_step(&mut self, meta: &StepMeta) -> Result<()> {
        self.step.clone_from(meta);
        Ok(())
    }

    fn embedding(&self, table: &Weight, out: &mut Vec<f32>) -> Result<()> {
        let h = table.k;
        let vocab = table.rows();
        let mut buf = vec![0f32; h];
        for (row, &tok) in out.chunks_mut(h).zip(&self.step.tokens) {
            if tok as usize >= vocab {
                bail!("token id {tok} is out of range for a vocabulary of {vocab}");
            }
            row.copy_from_slice(table.row(tok as usize, &mut buf));
        }
        Ok(())
    }

    fn rms_norm(&self, x: &Vec<f32>, w: &Vec<f32>, eps: f32, rows: usize, out: &mut Vec<f32>) {
        let n = rows * w.len();
        rms_norm_rows(&x[..n], w, eps, &mut out[..n]);
    }

    fn rms_norm_inplace(&self, x: &mut Vec<f32>, w: &Vec<f32>, eps: f32, rows: usize) {
        rms_norm_rows_inplace(&mut x[..rows * w.len()], w, eps);
    }

    fn add_rms_norm(
        &self,
        x: &Vec<f32>,
        y: &Vec<f32>,
        w: &Vec<f32>,
        eps: f32,
        rows: usize,
        sum: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) {
        let n = rows * w.len();
        sum[..n].copy_from_slice(&x[..n]);
        add_inplace(&mut sum[..n], &y[..n]);
        rms_norm_rows(&sum[..n], w, eps, &mut out[..n]);
    }

    fn add(&self, acc: &mut Vec<f32>, x: &Vec<f32>, len: usize) {
        add_inplace(&mut acc[..len], &x[..len]);
    }

    fn linear(&self, x: &Vec<f32>, rows: usize, w: &Weight, out: &mut Vec<f32>) {
        matmul_t(&x[..rows * w.k], rows, w, &mut out[..rows * w.rows()]);
    }

    fn split_qkv(
        &self,
        qkv: &Vec<f32>,
        rows: usize,
        qd: usize,
        kvd: usize,
        bias: Option<&Vec<f32>>,
        q: &mut Vec<f32>,
        k: &mut Vec<f32>,
        v: &mut Vec<f32>,
    ) {
        for (r, row) in qkv[..rows * (qd + 2 * kvd)]
            .chunks(qd + 2 * kvd)
            .enumerate()
        {
            let (rq, rest) = row.split_at(qd);
            let (rk, rv) = rest.split_at(kvd);
            let (oq, ok, ov) = (
                &mut q[r * qd..][..qd],
                &mut k[r * kvd..][..kvd],
                &mut v[r * kvd..][..kvd],
            );
            oq.copy_from_slice(rq);
            ok.copy_from_slice(rk);
            ov.copy_from_slice(rv);
            if let Some(b) = bias {
                add_inplace(oq, &b[..qd]);
                add_inplace(ok, &b[qd..qd + kvd]);
                add_inplace(ov, &b[qd + kvd..]);
            }
        }
    }

    fn apply_rope(&self, rope: &Rope, x: &mut Vec<f32>, rows: usize, n_heads: usize) {
        let n = rows * n_heads * rope.head_dim;
        rope.apply(&mut x[..n], n_heads, &self.step.positions[..rows]);
    }

    fn write_kv(&self, kv: &mut CpuKv, layer: usize, k: &Vec<f32>, v: &Vec<f32>) {
        let (kv_dim, half, slots) = (kv.kv_dim, kv.half, &self.step.slots);
        match &mut kv.data {
            KvData::F32(d) => {
                let (kc, vc) = halves_mut(d, half, layer);
                super::write_kv(kc, vc, k, v, slots, kv_dim);
            }
            KvData::Fp8(d) => {
                let caches = halves_mut(d, half, layer);
                let n = slots.len() * kv_dim;
                super::write_kv_fp8(caches, (&k[..n], &v[..n]), slots, kv_dim, kv.scales[layer]);
            }
        }
    }

    fn attention(&self, q: &Vec<f32>, kv: &CpuKv, layer: usize, d: &AttnDims, out: &mut Vec<f32>) {
        let seqs: Vec<AttnSeq> = self
            .step
            .seqs
            .iter()
            .map(|s| AttnSeq {
                q_start: s.q_start,
                q_len: s.q_len,
                ctx_len: s.ctx_len,
                block_table: &self.step.block_tables[s.table.clone()],
            })
            .collect();
        let shape = AttnShape {
            n_heads: d.n_heads,
            n_kv_heads: d.n_kv_heads,
            head_dim: d.head_dim,
            block_size: kv.block_size,
            scale: d.scale,
        };
        let n = self.step.tokens.len() * d.n_heads * d.head_dim;
        let (q, out) = (&q[..n], &mut out[..n]);
        match &kv.data {
            KvData::F32(d) => {
                let (kc, vc) = halves(d, kv.half, layer);
                paged_attention(q, kc, vc, &seqs, &shape, out);
            }
            KvData::Fp8(d) => {
                let (k, v) = halves(d, kv.half, layer);
                let (k_scale, v_scale) = kv.scales[layer];
                let rows = Fp8Rows {
                    k,
                    v,
                    k_scale,
                    v_scale,
                };
                paged_attention_rows(q, &rows, &seqs, &shape, out);
            }
        }
    }

    fn silu_mul(&self, gate_up: &Vec<f32>, rows: usize, inter: usize, out: &mut Vec<f32>) {
        silu_mul(
            &gate_up[..rows * 2 * inter],
            inter,
            &mut out[..rows * inter],
        );
    }

    fn moe(
        &self,
        x: &Vec<f32>,
        rows: usize,
        router_logits: &Vec<f32>,
        correction_bias: Option<&Vec<f32>>,
        experts: &Vec<Expert>,
        d: &MoeDims,
        scratch: &mut CpuMoeScratch,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let kk = rows * d.top_k;
        route(
            &router_logits[..rows * d.n_experts],
            rows,
            d.n_experts,
            d.top_k,
            &d.routing,
            correction_bias.map(|b| &b[..]),
            &mut scratch.ids[..kk],
            &mut scratch.weights[..kk],
        )
        .map_err(anyhow::Error::msg)?;
        moe_experts(
            &x[..rows * d.hidden],
            rows,
            d.hidden,
            d.inter,
            &scratch.ids[..kk],
            &scratch.weights[..kk],
            d.top_k,
            experts,
            &mut scratch.inner,
            &mut out[..rows * d.hidden],
        );
        Ok(())
    }

    fn gather_rows(&self, x: &Vec<f32>, width: usize, rows: &[usize], out: &mut Vec<f32>) {
        for (o, &r) in out.chunks_mut(width).zip(rows) {
            o.copy_from_slice(&x[r * width..][..width]);
        }
    }

    fn read(&self, x: &Vec<f32>, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(&x[..out.len()]);
        Ok(())
    }
}
