//! The engine thread and its handle. The thread owns the [`EngineCore`] and an inbox; it
//! blocks on the inbox when idle, and otherwise drains it between steps, so requests can be
//! added or aborted at any moment and take effect at the next step boundary.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::admission::validate_request;
use crate::config::EngineConfig;
use crate::engine_core::{EngineCore, EngineStats, panic_message};
use crate::executor::{Executor, ExecutorFactory, ExecutorInit, ReqId};
use crate::request::{EngineRequest, OutputReceiver, RequestOutput, output_channel};

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
/// the last sequence's final message (or if the engine thread dies). Dropping the stream
/// before that aborts the request in the engine, wherever it is (waiting, prefilling,
/// decoding): a client that went away costs no more compute.
#[derive(Debug)]
pub struct RequestStream {
    pub id: ReqId,
    pub rx: OutputReceiver,
    n: usize,
    finished: usize,
    inbox: Sender<Msg>,
}

impl RequestStream {
    fn note(&mut self, m: Option<RequestOutput>) -> Option<RequestOutput> {
        if m.as_ref().is_some_and(|m| m.finish_reason.is_some()) {
            self.finished += 1;
        }
        m
    }

    /// Next message, blocking the calling thread; `None` once the stream is closed.
    /// Not for async code (use [`Self::recv_async`]).
    pub fn recv(&mut self) -> Option<RequestOutput> {
        let m = self.rx.blocking_recv();
        self.note(m)
    }

    pub async fn recv_async(&mut self) -> Option<RequestOutput> {
        let m = self.rx.recv().await;
        self.note(m)
    }

    /// Like [`Self::recv`] with a deadline (`None` on timeout or close): for tests and
    /// synchronous callers that must not hang.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<RequestOutput> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.try_recv() {
                Ok(m) => return self.note(Some(m)),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return None,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// All remaining messages until the stream closes (blocking).
    pub fn iter(&mut self) -> impl Iterator<Item = RequestOutput> + '_ {
        std::iter::from_fn(move || self.recv())
    }

    /// Every sequence has sent its final message.
    pub fn is_finished(&self) -> bool {
        self.finished >= self.n
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.is_finished() {
            let _ = self.inbox.send(Msg::Abort(self.id));
        }
    }
}

/// What the engine reports after each step, to a callback on its own thread (metrics).
#[derive(Debug)]
pub struct StepInfo<'a> {
    /// Tokens computed in the step (vLLM's `iteration_tokens_total`).
    pub num_tokens: usize,
    pub stats: &'a EngineStats,
}

pub type StepObserver = Box<dyn FnMut(&StepInfo<'_>) + Send>;

#[derive(Debug)]
enum Msg {
    Add {
        id: ReqId,
        req: Box<EngineRequest>,
        tx: crate::request::OutputSender,
    },
    Abort(ReqId),
    AbortSeq(ReqId),
    Stats(Sender<EngineStats>),
    Shutdown,
}

pub struct Engine;

impl Engine {
    /// Spawns the engine thread around an executor built by the caller. Panics (here, not on
    /// the thread) on a nonsensical config.
    pub fn start(cfg: EngineConfig, executor: Box<dyn Executor + Send>) -> EngineHandle {
        Self::start_observed(cfg, executor, Box::new(|_| {}))
    }

    /// [`Self::start`] with a callback run on the engine thread after every step.
    /// The KV cache has `cfg.num_blocks` blocks.
    pub fn start_observed(
        cfg: EngineConfig,
        executor: Box<dyn Executor + Send>,
        observer: StepObserver,
    ) -> EngineHandle {
        cfg.assert_sane();
        let num_blocks = cfg.num_blocks;
        let factory: ExecutorFactory = Box::new(move || {
            Ok(ExecutorInit {
                executor,
                num_blocks,
            })
        });
        match Self::start_with(cfg, factory, observer) {
            Ok((handle, _)) => handle,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Spawns the engine thread, which first builds the executor with `factory` (so a runner
    /// tied to one thread, such as one holding a device context, lives on the thread that
    /// calls it), sizes the KV cache to the [`ExecutorInit::num_blocks`] it reports (ignoring
    /// `cfg.num_blocks`), builds the scheduler, then serves. Blocks until the engine is ready
    /// and returns its handle and the number of KV-cache blocks, or the factory's error (a
    /// panic in the factory becomes an error too), or an error for a nonsensical config.
    /// The observer runs on the engine thread after every step.
    pub fn start_with(
        mut cfg: EngineConfig,
        factory: ExecutorFactory,
        observer: StepObserver,
    ) -> anyhow::Result<(EngineHandle, usize)> {
        cfg.check_except_num_blocks().map_err(anyhow::Error::msg)?;
        let (tx, rx) = channel();
        let (ready_tx, ready_rx) = sync_channel(1);
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(EngineStats::default()),
            death: OnceLock::new(),
        });
        let thread_shared = shared.clone();
        let thread_cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("ferrum-engine".into())
            .spawn(move || {
                if let Some(core) = init(thread_cfg, factory, &ready_tx, &thread_shared) {
                    drop(ready_tx);
                    run(core, rx, observer, &thread_shared);
                }
            })
            .map_err(|e| anyhow::anyhow!("spawning the engine thread: {e}"))?;
        let num_blocks = match ready_rx.recv() {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                anyhow::bail!("the engine thread exited before it was ready");
            }
        };
        cfg.num_blocks = num_blocks;
        let handle = EngineHandle {
            inner: Arc::new(Inner {
                tx,
                cfg,
                next_id: AtomicU64::new(0),
                thread: Mutex::new(Some(thread)),
                shared,
            }),
        };
        Ok((handle, num_blocks))
    }
}

/// The engine thread's start: builds the executor and the core, and reports the block count
/// (or why it could not) to [`Engine::start_with`].
fn init(
    mut cfg: EngineConfig,
    factory: ExecutorFactory,
    ready: &SyncSender<anyhow::Result<usize>>,
    shared: &Shared,
) -> Option<EngineCore> {
    let built = catch_unwind(AssertUnwindSafe(move || {
        let init = factory()?;
        cfg.num_blocks = init.num_blocks;
        if init.num_blocks == 0 {
            anyhow::bail!("the executor allocated no KV-cache block");
        }
        cfg.check().map_err(anyhow::Error::msg)?;
        anyhow::Ok(EngineCore::new(cfg, init.executor))
    }))
    .unwrap_or_else(|panic| {
        Err(anyhow::anyhow!(
            "building the executor panicked: {}",
            panic_message(&*panic)
        ))
    });
    match built {
        Ok(core) => {
            let stats = core.stats();
            let num_blocks = stats.num_total_blocks;
            *shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = stats;
            let _ = ready.send(Ok(num_blocks));
            Some(core)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            None
        }
    }
}

/// What the engine thread publishes for everyone, read without a round trip to it.
struct Shared {
    snapshot: Mutex<EngineStats>,
    /// Set once if the engine hit an error it cannot recover from; never cleared.
    death: OnceLock<String>,
}

struct Inner {
    tx: Sender<Msg>,
    cfg: EngineConfig,
    next_id: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
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
    pub fn add_request(&self, mut req: EngineRequest) -> Result<RequestStream, EngineError> {
        if self.death().is_some() {
            return Err(EngineError::Dead);
        }
        validate_request(&self.inner.cfg, &req).map_err(EngineError::InvalidRequest)?;
        req.arrival_time.get_or_insert_with(Instant::now);
        let n = req.params.n;
        let id = self.inner.next_id.fetch_add(n as u64, Ordering::Relaxed);
        let (tx, rx) = output_channel();
        self.inner
            .tx
            .send(Msg::Add {
                id,
                req: Box::new(req),
                tx,
            })
            .map_err(|_| EngineError::Dead)?;
        Ok(RequestStream {
            id,
            rx,
            n,
            finished: 0,
            inbox: self.inner.tx.clone(),
        })
    }

    /// The engine's gauges and counters as of its last step or inbox message, without waiting
    /// for the engine thread (it may be mid-step).
    pub fn snapshot(&self) -> EngineStats {
        self.inner
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the engine stopped serving, if it hit an unrecoverable error.
    pub fn death(&self) -> Option<&str> {
        self.inner.shared.death.get().map(String::as_str)
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

    /// Answered between steps, so it reflects every message sent before it (a round trip to
    /// the engine thread: for offline callers and tests; a server reads [`Self::snapshot`]).
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

/// The thread's loop. Returns on `Shutdown`, or when every handle and stream is gone and no
/// work is left. A panic in the engine's own code (the executor's are caught per step), or a
/// [`crate::FatalError`] from the executor, kills the engine cleanly: the reason is recorded,
/// every request fails with it, and later ones are refused.
fn run(mut core: EngineCore, rx: Receiver<Msg>, mut observer: StepObserver, shared: &Shared) {
    let publish = |core: &EngineCore| {
        *shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = core.stats();
    };
    // `Ok(None)`: a normal exit; `Ok(Some(reason))`: the executor failed fatally.
    let served = catch_unwind(AssertUnwindSafe(|| {
        loop {
            if !core.has_work() {
                // Idle: sleep until something arrives.
                match rx.recv() {
                    Ok(m) => {
                        if !handle(&mut core, m) {
                            return None;
                        }
                    }
                    Err(_) => return None,
                }
            }
            // Everything that arrived during the last step takes effect before the next one.
            while let Ok(m) = rx.try_recv() {
                if !handle(&mut core, m) {
                    return None;
                }
            }
            if core.has_work() {
                let report = core.step();
                if let Some(reason) = core.death() {
                    return Some(reason.to_string());
                }
                let stats = core.stats();
                observer(&StepInfo {
                    num_tokens: report.output.num_tokens(),
                    stats: &stats,
                });
                *shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = stats;
            } else {
                publish(&core);
            }
        }
    }));
    let reason = match served {
        Ok(None) => {
            core.abort_all("the engine is shutting down");
            publish(&core);
            return;
        }
        Ok(Some(reason)) => reason,
        Err(panic) => format!("the engine crashed: {}", panic_message(&*panic)),
    };
    tracing::error!("{reason}; refusing all requests from now on");
    let _ = shared.death.set(reason.clone());
    // Its state may be inconsistent: fail what it holds if it can, else drop it (which
    // closes every stream, and the output side reports the death).
    if catch_unwind(AssertUnwindSafe(|| core.abort_all(&reason))).is_ok() {
        publish(&core);
    }
    drop(core);
    // Requests already in the inbox get the same answer instead of silence.
    for m in rx.iter() {
        match m {
            Msg::Add { tx, .. } => {
                let _ = tx.send(RequestOutput {
                    finish_reason: Some(crate::FinishReason::Abort),
                    error: Some(reason.clone()),
                    ..Default::default()
                });
            }
            Msg::Stats(tx) => {
                let _ = tx.send(EngineStats::default());
            }
            Msg::Shutdown => return,
            Msg::Abort(_) | Msg::AbortSeq(_) => {}
        }
    }
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
