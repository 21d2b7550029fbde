//! The SwiGLU MLP: `down(silu(gate(x)) * up(x))`, gate and up stacked into one matmul.

use crate::model::{NormOut, Workspace};
use crate::params::{ParamLoader, Split};
use anyhow::Result;
use ferrum_backend::{Backend, Weights};

pub struct Mlp<W: Weights> {
    /// gate and up projections stacked: 2·inter × hidden.
    gate_up: W::Weight,
    down: W::Weight,
    inter: usize,
}

impl<W: Weights> Mlp<W> {
    pub fn load(l: &ParamLoader<W>, p: &str, hidden: usize, inter: usize) -> Result<Self> {
        let (g, u) = (format!("{p}.gate_proj"), format!("{p}.up_proj"));
        Ok(Mlp {
            gate_up: l.stacked(&[(&g, inter), (&u, inter)], hidden, Split::Rows)?,
            down: l.linear(&format!("{p}.down_proj"), hidden, inter, Split::Cols)?,
            inter,
        })
    }

    /// `(gate_up, down)`, for experts.
    pub fn into_parts(self) -> (W::Weight, W::Weight) {
        (self.gate_up, self.down)
    }

    /// Its intermediate width (gate and up rows each).
    pub fn inter(&self) -> usize {
        self.inter
    }

    /// The MLP of `into_parts`' weights, `inter` wide.
    pub fn from_parts(gate_up: W::Weight, down: W::Weight, inter: usize) -> Self {
        Mlp {
            gate_up,
            down,
            inter,
        }
    }
}

impl<B: Backend> Mlp<B> {
    /// `ws.proj = mlp(rms_norm(ws.x + ws.proj))` for t rows: a dense layer's post-attention
    /// norm, run with the gate/up projection ([`Workspace::norm_linear`]).
    pub fn forward_normed(
        &self,
        be: &B,
        t: usize,
        hidden: usize,
        norm: &B::Vector,
        eps: f32,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        ws.norm_linear(be, norm, eps, t, true, &self.gate_up, NormOut::GateUp);
        be.silu_mul(&ws.gate_up, t, self.inter, &mut ws.act);
        be.linear(&ws.act, t, &self.down, &mut ws.proj);
        be.all_reduce(&mut ws.proj, t * hidden)
    }

    /// `ws.shared = mlp(ws.normed)` for t rows: an MoE block's shared experts, whose output
    /// sits beside the routed one (uses `ws.gate_up` and `ws.act`).
    pub fn forward_shared(
        &self,
        be: &B,
        t: usize,
        hidden: usize,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        be.linear_swiglu(
            &ws.normed,
            t,
            &self.gate_up,
            self.inter,
            &mut ws.gate_up,
            &mut ws.act,
        );
        be.linear(&ws.act, t, &self.down, &mut ws.shared);
        be.all_reduce(&mut ws.shared, t * hidden)
    }
}
