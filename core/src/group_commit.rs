//! Group commit: many small writes share one transaction on SQLite.
//!
//! SQLite has one writer and pays a flush to disk per commit (`synchronous=FULL`), so one
//! commit per write caps a hot path at the disk's flush rate. Here concurrent writes share
//! a transaction instead, and each caller's answer waits for the shared `COMMIT`: nothing
//! is acknowledged before it is durable. Batches form by themselves: whatever queued up
//! while the last one committed goes into the next. If anything in a batch fails, the
//! batch is rolled back and its writes run again, one transaction each, so a failing write
//! fails alone. A write may therefore run more than once, but it commits at most once.
//!
//! PostgreSQL commits concurrently on its pool, so there each write is by default its own
//! transaction. Writes that all update a few hot rows (a user's mailbox usage) queue on
//! those rows' locks, each held through its commit's flush; [`GroupCommit::on_both`]
//! batches them on PostgreSQL too.

use crate::db::{Backend, Db};
use sqlx::AnyConnection;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

/// Writes per shared transaction, at most.
const MAX_BATCH: usize = 256;

/// The future a write returns, borrowing the transaction's connection.
pub type WriteFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

type Answer = Result<Box<dyn Any + Send>, sqlx::Error>;
type Work = Box<dyn for<'c> Fn(&'c mut AnyConnection) -> WriteFuture<'c, Box<dyn Any + Send>> + Send + Sync>;

/// Where a hot path's writes go. Cheap to share behind an `Arc`; on SQLite its task ends
/// when the last handle is dropped.
pub struct GroupCommit {
    db: Db,
    name: &'static str,
    queue: Option<mpsc::Sender<(Work, oneshot::Sender<Answer>)>>,
}

impl GroupCommit {
    /// On SQLite, starts the committing task (so: inside a tokio runtime). `name` labels
    /// its metrics.
    pub fn new(db: Db, name: &'static str) -> Self {
        let batch = db.backend() == Backend::Sqlite;
        Self::start(db, name, batch)
    }

    /// Batches on PostgreSQL as well as on SQLite.
    pub fn on_both(db: Db, name: &'static str) -> Self {
        Self::start(db, name, true)
    }

    fn start(db: Db, name: &'static str, batch: bool) -> Self {
        let queue = batch.then(|| {
            let (send, receive) = mpsc::channel(4 * MAX_BATCH);
            tokio::spawn(run(db.clone(), name, receive));
            send
        });
        Self { db, name, queue }
    }

    /// Run `write` in a transaction (shared on SQLite) and return its result once that
    /// transaction has committed. `write` must be repeatable: it runs again on its own if
    /// its batch fails.
    pub async fn write<T, F>(&self, write: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut AnyConnection) -> WriteFuture<'c, T> + Send + Sync + 'static,
    {
        let Some(queue) = &self.queue else {
            let mut tx = self.db.pool().begin().await?;
            let out = write(&mut tx).await?;
            tx.commit().await?;
            return Ok(out);
        };
        let work: Work = Box::new(move |c| {
            let fut = write(c);
            Box::pin(async move { fut.await.map(|t| Box::new(t) as Box<dyn Any + Send>) })
        });
        let (send, receive) = oneshot::channel();
        let stopped = || sqlx::Error::Protocol(format!("the {} writer has stopped", self.name));
        queue.send((work, send)).await.map_err(|_| stopped())?;
        let out = receive.await.map_err(|_| stopped())??;
        out.downcast::<T>().map(|t| *t).map_err(|_| sqlx::Error::Protocol("a write answered the wrong type".into()))
    }
}

async fn run(db: Db, name: &'static str, mut queue: mpsc::Receiver<(Work, oneshot::Sender<Answer>)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("sichat_group_commit_writes", "writer" => name).record(batch.len() as f64);
        let answers = match together(&db, &batch).await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(writer = name, error = %e, writes = batch.len(), "group commit failed; writing one by one");
                let mut answers = Vec::with_capacity(batch.len());
                for (work, _) in &batch {
                    answers.push(alone(&db, work).await);
                }
                answers
            }
        };
        for ((_, reply), answer) in batch.drain(..).zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// The whole batch in one transaction; any error rolls all of it back.
async fn together(db: &Db, batch: &[(Work, oneshot::Sender<Answer>)]) -> Result<Vec<Answer>, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let mut answers = Vec::with_capacity(batch.len());
    for (work, _) in batch {
        answers.push(Ok(work(&mut tx).await?));
    }
    tx.commit().await?;
    Ok(answers)
}

async fn alone(db: &Db, work: &Work) -> Answer {
    let mut tx = db.pool().begin().await?;
    let out = work(&mut tx).await?;
    tx.commit().await?;
    Ok(out)
}
