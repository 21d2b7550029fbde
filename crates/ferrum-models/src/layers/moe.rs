//! A mixture-of-experts feed-forward: a router (linear, f32), the backend's routed-experts op,
//! and optional shared experts added to the routed output (GLM-4.5: `routed + shared`), which
//! the backend may run inside its routed-experts op instead.

use super::mlp::Mlp;
use crate::config::MoeConfig;
use crate::model::Workspace;
use crate::params::{ParamLoader, Split};
use anyhow::Result;
use ferrum_backend::{Backend, MoeDims, MoeRouter, Weights};

pub struct MoeBlock<W: Weights> {
    router: W::Weight,
    correction_bias: Option<W::Vector>,
    experts: W::Experts,
    shared: Option<Mlp<W>>,
    pub dims: MoeDims,
}

impl<W: Weights> MoeBlock<W> {
    pub fn load(l: &ParamLoader<W>, p: &str, hidden: usize, m: &MoeConfig) -> Result<Self> {
        let router = l.linear(&format!("{p}.gate"), m.n_experts, hidden, Split::Whole)?;
        let correction_bias = if m.correction_bias {
            let name = format!("{p}.gate.e_score_correction_bias");
            Some(l.vector(&name, m.n_experts, Split::Whole)?)
        } else {
            None
        };
        let experts = (0..m.n_experts)
            .map(|e| {
                Mlp::load(l, &format!("{p}.experts.{e}"), hidden, m.inter).map(Mlp::into_parts)
            })
            .collect::<Result<Vec<_>>>()?;
        let shared_inter = m.inter * m.n_shared;
        let shared = if m.n_shared > 0 {
            let name = format!("{p}.shared_experts");
            Some(Mlp::load(l, &name, hidden, shared_inter)?.into_parts())
        } else {
            None
        };
        // the backend may take the shared expert among the routed ones
        let (experts, shared) = l.experts(experts, shared)?;
        Ok(MoeBlock {
            router,
            correction_bias,
            experts,
            shared: shared.map(|(gate_up, down)| Mlp::from_parts(gate_up, down, shared_inter)),
            dims: m.dims(hidden),
        })
    }
}

impl<W: Weights> MoeBlock<W> {
    /// The router, its bias and experts (the layer runs it together with the norm before it).
    pub fn router(&self) -> MoeRouter<'_, W> {
        MoeRouter {
            weight: &self.router,
            correction_bias: self.correction_bias.as_ref(),
            experts: &self.experts,
            dims: &self.dims,
        }
    }

    /// The shared experts' MLP where the model runs it (through the workspace's `gate_up`,
    /// `act` and `shared`); `None` where there is none or the backend took it.
    pub fn shared_mlp(&self) -> Option<&Mlp<W>> {
        self.shared.as_ref()
    }
}

impl<B: Backend> MoeBlock<B> {
    /// `ws.proj = moe(ws.normed)` for t rows, the router's logits already in
    /// `ws.router_logits` (`Workspace::norm_router`: perhaps the routing too).
    pub fn forward(&self, be: &B, t: usize, ws: &mut Workspace<B>) -> Result<()> {
        let Workspace {
            normed,
            router_logits,
            moe,
            proj,
            ..
        } = ws;
        let scratch = moe.as_mut().expect("an MoE model has MoE scratch");
        be.moe(
            normed,
            t,
            router_logits,
            self.correction_bias.as_ref(),
            &self.experts,
            &self.dims,
            scratch,
            proj,
        )?;
        be.all_reduce(proj, t * self.dims.hidden)?;
        if let Some(shared) = &self.shared {
            shared.forward_shared(be, t, self.dims.hidden, ws)?;
            be.add(&mut ws.proj, &ws.shared, t * self.dims.hidden);
        }
        Ok(())
    }
}
