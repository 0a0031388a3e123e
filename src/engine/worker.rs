//! The engine: one worker thread owns the model, callers queue requests to it.
//!
//! The queue is bounded. A request that finds it full gets [`EngineError::Overloaded`] at
//! once instead of waiting. A caller that stops waiting (drops the future returned by
//! [`Engine::generate`]) cancels its request: the worker skips it if it has not started, or
//! stops it before the next token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::error::{EngineError, Result};
use super::generate::{GenerateRequest, Generation, LoadedModel, ModelInfo};

struct Job {
    request: GenerateRequest,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Generation>>,
}

/// Counters the worker keeps; read them for metrics and tests.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Requests that reached the model (prompt evaluated).
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    /// Requests waiting in the queue or running now.
    pub in_flight: AtomicUsize,
}

/// A handle to the engine; clones share the same worker.
#[derive(Clone)]
pub struct Engine {
    sender: mpsc::Sender<Job>,
    capacity: usize,
    info: Arc<ModelInfo>,
    stats: Arc<EngineStats>,
}

impl Engine {
    /// Starts the worker thread that owns `model`, with room for `queue_capacity` waiting
    /// requests besides the running one.
    pub fn start(model: LoadedModel, queue_capacity: usize) -> Self {
        let capacity = queue_capacity.max(1);
        let (sender, receiver) = mpsc::channel(capacity);
        let info = Arc::new(model.info().clone());
        let stats = Arc::new(EngineStats::default());
        let worker_stats = stats.clone();
        thread::Builder::new()
            .name("leadgate-engine".into())
            .spawn(move || run_worker(model, receiver, worker_stats))
            .expect("the operating system failed to start the engine thread");
        Self {
            sender,
            capacity,
            info,
            stats,
        }
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Returns the number of requests waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.sender.capacity()
    }

    /// Queues a request and waits for its result.
    ///
    /// # Errors
    /// [`EngineError::Overloaded`] at once when the queue is full, [`EngineError::Stopped`]
    /// when the worker has exited, and any error of the generation itself.
    pub async fn generate(&self, request: GenerateRequest) -> Result<Generation> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            queued_at: Instant::now(),
            reply,
        };
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.sender.try_send(job) {
            self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => EngineError::Overloaded {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => EngineError::Stopped,
            });
        }
        answer.await.unwrap_or(Err(EngineError::Stopped))
    }

    /// Like [`Engine::generate`], for callers outside an async runtime.
    pub fn generate_blocking(&self, request: GenerateRequest) -> Result<Generation> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|_| EngineError::Stopped)?;
        runtime.block_on(self.generate(request))
    }
}

fn run_worker(mut model: LoadedModel, mut receiver: mpsc::Receiver<Job>, stats: Arc<EngineStats>) {
    while let Some(job) = receiver.blocking_recv() {
        let queue_ms = job.queued_at.elapsed().as_secs_f64() * 1000.0;
        let reply = job.reply;
        if reply.is_closed() {
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let result = model.prepare(&job.request).and_then(|prepared| {
            stats.started.fetch_add(1, Ordering::Relaxed);
            model.generate(prepared, &|| reply.is_closed())
        });
        let result = result.map(|mut generation| {
            generation.timings.queue_ms = queue_ms;
            generation
        });
        let counter = match &result {
            Ok(_) => &stats.completed,
            Err(EngineError::Cancelled) => &stats.cancelled,
            Err(_) => &stats.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        // A caller that gave up no longer listens; its result is dropped.
        let _ = reply.send(result);
    }
}
