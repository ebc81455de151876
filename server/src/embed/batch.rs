//! Micro-batching of embedding work: requests queue their texts (a bounded queue: a full one
//! refuses at once), and one thread runs the encoder over every text that arrived within a
//! short wait of the first, up to a batch size, then answers each request with its own rows.
//! So many concurrent requests cost one encoder pass, and the encoder never runs twice at once.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// What a batch pass does: texts in, one row per text out (or why not).
pub type EncodeFn = Box<dyn FnMut(&[&str]) -> Result<Vec<Vec<f32>>, Refused> + Send>;

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Requests waiting at most (beyond it: [`Refused::Full`]).
    pub queue: usize,
    /// Texts in one encoder pass at most (one request's texts are never split).
    pub max_texts: usize,
    /// How long the first request of a batch waits for others.
    pub wait: Duration,
    /// A pass encodes its texts sorted by length in runs of this many, so short texts are not
    /// padded to the longest one's length (an abstract beside one-line responses).
    pub bucket: usize,
}

/// Why a request got no rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// The queue is full: the caller answers 503 and retries later.
    Full,
    /// This server has no encoder (not built in, or its files are missing): why.
    NoEncoder(String),
    /// The encoder failed on these texts: its message.
    Failed(String),
}

/// A request's rows, or why none.
pub type Answer = Result<Vec<Vec<f32>>, Refused>;

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Answer>,
}

/// The queue's sending end; the thread ends when it is dropped.
pub struct Batcher {
    tx: SyncSender<Job>,
}

/// Counts of the passes run (for tests and `/metrics`).
#[derive(Debug, Default)]
pub struct BatchStats {
    pub passes: std::sync::atomic::AtomicU64,
    pub texts: std::sync::atomic::AtomicU64,
}

impl Batcher {
    /// Starts the batching thread around `encode`.
    pub fn start(config: BatchConfig, encode: EncodeFn, stats: std::sync::Arc<BatchStats>) -> Self {
        let (tx, rx) = sync_channel(config.queue.max(1));
        std::thread::Builder::new()
            .name("pal-embed-batch".into())
            .spawn(move || run(rx, config, encode, &stats))
            .expect("the batching thread starts");
        Self { tx }
    }

    /// Queues `texts`; the receiver gets their rows in order. Refused at once when full.
    pub fn submit(&self, texts: Vec<String>) -> Result<oneshot::Receiver<Answer>, Refused> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { texts, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => {
                Err(Refused::Failed("the embedding thread stopped".into()))
            }
        }
    }
}

/// `encode` over `texts` sorted by length, `bucket` at a time; rows back in `texts` order.
fn bucketed(texts: &[&str], bucket: usize, encode: &mut EncodeFn) -> Answer {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut rows = vec![Vec::new(); texts.len()];
    for run in order.chunks(bucket.max(1)) {
        let part: Vec<&str> = run.iter().map(|&i| texts[i]).collect();
        let out = encode(&part)?;
        if out.len() != part.len() {
            return Err(Refused::Failed(format!(
                "the encoder gave {} rows for {} texts",
                out.len(),
                part.len()
            )));
        }
        for (&i, r) in run.iter().zip(out) {
            rows[i] = r;
        }
    }
    Ok(rows)
}

fn run(rx: Receiver<Job>, config: BatchConfig, mut encode: EncodeFn, stats: &BatchStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let mut size = first.texts.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + config.wait;
        while size < config.max_texts {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) if size + j.texts.len() > config.max_texts => {
                    held = Some(j);
                    break;
                }
                Ok(j) => {
                    size += j.texts.len();
                    batch.push(j);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // Requests whose caller went away (a timeout, a closed connection) cost nothing.
        batch.retain(|j| !j.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let texts: Vec<&str> = batch
            .iter()
            .flat_map(|j| j.texts.iter().map(String::as_str))
            .collect();
        stats.passes.fetch_add(1, Relaxed);
        stats.texts.fetch_add(texts.len() as u64, Relaxed);
        let out = bucketed(&texts, config.bucket, &mut encode);
        match out {
            Ok(rows) => {
                let mut rows = rows.into_iter();
                for j in batch {
                    let mine: Vec<Vec<f32>> = rows.by_ref().take(j.texts.len()).collect();
                    let _ = j.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for j in batch {
                    let _ = j.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;

    fn lengths() -> EncodeFn {
        Box::new(|texts| {
            std::thread::sleep(Duration::from_millis(20));
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_passes_and_get_their_own_rows() {
        let stats = Arc::new(BatchStats::default());
        let config = BatchConfig {
            queue: 64,
            max_texts: 16,
            wait: Duration::from_millis(5),
            bucket: 3,
        };
        let b = Arc::new(Batcher::start(config, lengths(), stats.clone()));
        let mut waits = vec![];
        for n in 0..32usize {
            let texts: Vec<String> = (0..2).map(|i| "x".repeat(n * 2 + i + 1)).collect();
            waits.push((n, b.submit(texts).unwrap()));
        }
        for (n, rx) in waits {
            let rows = rx.await.unwrap().unwrap();
            let want = vec![vec![(n * 2 + 1) as f32], vec![(n * 2 + 2) as f32]];
            assert_eq!(rows, want, "request {n}");
        }
        let passes = stats.passes.load(Relaxed);
        assert_eq!(stats.texts.load(Relaxed), 64);
        assert!(passes <= 8, "64 texts, ≤ 16 per pass, took {passes} passes");
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_failures_reach_every_caller() {
        let stats = Arc::new(BatchStats::default());
        let config = BatchConfig {
            queue: 1,
            max_texts: 1,
            wait: Duration::ZERO,
            bucket: 1,
        };
        let slow: EncodeFn = Box::new(|_| {
            std::thread::sleep(Duration::from_millis(200));
            Err(Refused::NoEncoder("no encoder".into()))
        });
        let b = Batcher::start(config, slow, stats);
        let first = b.submit(vec!["a".into()]).unwrap();
        std::thread::sleep(Duration::from_millis(50)); // the thread took it
        let second = b.submit(vec!["b".into()]).unwrap();
        assert_eq!(b.submit(vec!["c".into()]).unwrap_err(), Refused::Full);
        for rx in [first, second] {
            let got = rx.blocking_recv().unwrap();
            assert_eq!(got, Err(Refused::NoEncoder("no encoder".into())));
        }
    }
}
