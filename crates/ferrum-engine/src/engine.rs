//! The engine thread and its handle. The thread owns the [`EngineCore`] and an inbox; it
//! blocks on the inbox when idle, and otherwise drains it between steps, so requests can be
//! added or aborted at any moment and take effect at the next step boundary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::admission::validate_request;
use crate::config::EngineConfig;
use crate::engine_core::{EngineCore, EngineStats};
use crate::executor::{Executor, ReqId};
use crate::request::{EngineRequest, RequestOutput};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The request can never be served; the message is meant for the user (HTTP 400).
    #[error("{0}")]
    InvalidRequest(String),
    /// The engine thread is gone (shut down or crashed).
    #[error("the engine is not running")]
    Dead,
}

/// The outputs of one request, from every one of its `n` sequences. The channel closes after
/// the last sequence's final message (or if the engine thread dies).
#[derive(Debug)]
pub struct RequestStream {
    pub id: ReqId,
    pub rx: Receiver<RequestOutput>,
}

impl RequestStream {
    /// Next message; `None` once the stream is closed.
    pub fn recv(&self) -> Option<RequestOutput> {
        self.rx.recv().ok()
    }

    /// All remaining messages until the stream closes.
    pub fn iter(&self) -> impl Iterator<Item = RequestOutput> + '_ {
        self.rx.iter()
    }
}

enum Msg {
    Add {
        id: ReqId,
        req: Box<EngineRequest>,
        tx: Sender<RequestOutput>,
    },
    Abort(ReqId),
    AbortSeq(ReqId),
    Stats(Sender<EngineStats>),
    Shutdown,
}

pub struct Engine;

impl Engine {
    /// Spawns the engine thread. Panics (here, not on the thread) on a nonsensical config.
    pub fn start(cfg: EngineConfig, executor: Box<dyn Executor>) -> EngineHandle {
        let core = EngineCore::new(cfg.clone(), executor);
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("ferrum-engine".into())
            .spawn(move || run(core, rx))
            .expect("spawning the engine thread");
        EngineHandle {
            inner: Arc::new(Inner {
                tx,
                cfg,
                next_id: AtomicU64::new(0),
                thread: Mutex::new(Some(thread)),
            }),
        }
    }
}

struct Inner {
    tx: Sender<Msg>,
    cfg: EngineConfig,
    next_id: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Cheap to clone; every clone talks to the same engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl EngineHandle {
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// Validates on the caller's thread (refusals never reach the queue), then queues.
    /// A request with `n > 1` takes ids `id .. id + n` (one per sequence); `id` names it.
    pub fn add_request(&self, req: EngineRequest) -> Result<RequestStream, EngineError> {
        validate_request(&self.inner.cfg, &req).map_err(EngineError::InvalidRequest)?;
        let id = self
            .inner
            .next_id
            .fetch_add(req.params.n as u64, Ordering::Relaxed);
        let (tx, rx) = channel();
        self.inner
            .tx
            .send(Msg::Add {
                id,
                req: Box::new(req),
                tx,
            })
            .map_err(|_| EngineError::Dead)?;
        Ok(RequestStream { id, rx })
    }

    /// Frees the request's blocks; each unfinished sequence gets a final `Abort` message.
    /// Unknown or finished ids are ignored.
    pub fn abort(&self, id: ReqId) {
        let _ = self.inner.tx.send(Msg::Abort(id));
    }

    /// Aborts only sequence `seq_index` of request `id` (the stream's id); its siblings go on.
    pub fn abort_seq(&self, id: ReqId, seq_index: usize) {
        let _ = self.inner.tx.send(Msg::AbortSeq(id + seq_index as u64));
    }

    /// Answered between steps, so it reflects every message sent before it.
    /// Returns the default (all zero) if the engine is gone.
    pub fn stats(&self) -> EngineStats {
        let (tx, rx) = channel();
        if self.inner.tx.send(Msg::Stats(tx)).is_err() {
            return EngineStats::default();
        }
        rx.recv().unwrap_or_default()
    }

    /// Stops the thread after the current step; unfinished requests end with `Abort` and an
    /// error. Blocks until the thread has exited. Idempotent.
    pub fn shutdown(&self) {
        let _ = self.inner.tx.send(Msg::Shutdown);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// The thread's loop. Returns on `Shutdown`, or when every handle is gone and no work is left.
fn run(mut core: EngineCore, rx: Receiver<Msg>) {
    'serve: loop {
        if !core.has_work() {
            // Idle: sleep until something arrives.
            match rx.recv() {
                Ok(m) => {
                    if !handle(&mut core, m) {
                        break 'serve;
                    }
                }
                Err(_) => break 'serve,
            }
        }
        // Everything that arrived during the last step takes effect before the next one.
        while let Ok(m) = rx.try_recv() {
            if !handle(&mut core, m) {
                break 'serve;
            }
        }
        if core.has_work() {
            core.step();
        }
    }
    core.abort_all("the engine is shutting down");
}

/// Applies one inbox message; false means shut down.
fn handle(core: &mut EngineCore, m: Msg) -> bool {
    match m {
        Msg::Add { id, req, tx } => {
            if let Err(e) = core.add_request(id, *req, tx.clone()) {
                // Validated by the handle already; reaching here means a bug, not user error.
                let _ = tx.send(RequestOutput {
                    finish_reason: Some(crate::FinishReason::Abort),
                    error: Some(e),
                    ..Default::default()
                });
            }
        }
        Msg::Abort(id) => core.abort(id),
        Msg::AbortSeq(id) => core.abort_seq(id),
        Msg::Stats(tx) => {
            let _ = tx.send(core.stats());
        }
        Msg::Shutdown => return false,
    }
    true
}
