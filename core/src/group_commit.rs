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
//! batches them on PostgreSQL too, on a connection the writer keeps between batches.
//!
//! Writes of one kind may also be done as one ([`GroupCommit::write_grouped`]): all those
//! in a batch go to one [`Grouped::write_all`], e.g. one multi-row statement instead of a
//! round trip each.

use crate::db::{Backend, Db};
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, Connection};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Writes per shared transaction, at most.
const MAX_BATCH: usize = 256;

/// The future a write returns, borrowing the transaction's connection.
pub type WriteFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// Writes of one kind that are done together: every item of a batch in one call.
pub trait Grouped: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Out: Send + 'static;
    /// Write `items` in the caller's transaction; one answer per item, in their order. Must
    /// be repeatable, like [`GroupCommit::write`]'s writes.
    fn write_all<'c>(
        &'c self,
        c: &'c mut AnyConnection,
        items: Vec<Arc<Self::Item>>,
    ) -> WriteFuture<'c, Vec<Self::Out>>;
}

type Answer = Result<Box<dyn Any + Send>, sqlx::Error>;
type Work = Box<dyn for<'c> Fn(&'c mut AnyConnection) -> WriteFuture<'c, Box<dyn Any + Send>> + Send + Sync>;
type Item = Arc<dyn Any + Send + Sync>;
type Positions = Vec<usize>;

/// A [`Grouped`] with its types erased, so that one queue holds every kind.
trait AnyGroup: Send + Sync {
    fn write_all<'c>(&'c self, c: &'c mut AnyConnection, items: Vec<Item>)
        -> WriteFuture<'c, Vec<Box<dyn Any + Send>>>;
}

impl<G: Grouped> AnyGroup for G {
    fn write_all<'c>(
        &'c self,
        c: &'c mut AnyConnection,
        items: Vec<Item>,
    ) -> WriteFuture<'c, Vec<Box<dyn Any + Send>>> {
        Box::pin(async move {
            let items = items
                .into_iter()
                .map(|i| i.downcast::<G::Item>().map_err(|_| wrong_type()))
                .collect::<Result<Vec<_>, _>>()?;
            let n = items.len();
            let outs = Grouped::write_all(self, c, items).await?;
            if outs.len() != n {
                return Err(sqlx::Error::Protocol(format!("a grouped write answered {} of {n} items", outs.len())));
            }
            Ok(outs.into_iter().map(|o| Box::new(o) as Box<dyn Any + Send>).collect())
        })
    }
}

enum Job {
    One(Work),
    Grouped(Arc<dyn AnyGroup>, Item),
}

type Queued = (Job, oneshot::Sender<Answer>);

/// Where a hot path's writes go. Cheap to share behind an `Arc`; on SQLite its task ends
/// when the last handle is dropped.
pub struct GroupCommit {
    db: Db,
    name: &'static str,
    queue: Option<mpsc::Sender<Queued>>,
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
        let work: Work = Box::new(move |c| {
            let fut = write(c);
            Box::pin(async move { fut.await.map(|t| Box::new(t) as Box<dyn Any + Send>) })
        });
        self.queue_up(Job::One(work)).await
    }

    /// Write `item` with the others of `group` in the same batch, all in one
    /// [`Grouped::write_all`]; return its answer once the transaction has committed.
    pub async fn write_grouped<G: Grouped>(&self, group: &Arc<G>, item: Arc<G::Item>) -> Result<G::Out, sqlx::Error> {
        let group: Arc<dyn AnyGroup> = group.clone();
        self.queue_up(Job::Grouped(group, item)).await
    }

    /// Hand `job` to the committing task, or, where writes are not batched, run it in a
    /// transaction of its own.
    async fn queue_up<T: 'static>(&self, job: Job) -> Result<T, sqlx::Error> {
        let out = match &self.queue {
            None => alone(&self.db, &job).await?,
            Some(queue) => {
                let stopped = || sqlx::Error::Protocol(format!("the {} writer has stopped", self.name));
                let (send, receive) = oneshot::channel();
                queue.send((job, send)).await.map_err(|_| stopped())?;
                receive.await.map_err(|_| stopped())??
            }
        };
        out.downcast::<T>().map(|t| *t).map_err(|_| wrong_type())
    }
}

fn wrong_type() -> sqlx::Error {
    sqlx::Error::Protocol("a write answered the wrong type".into())
}

async fn run(db: Db, name: &'static str, mut queue: mpsc::Receiver<Queued>) {
    // On PostgreSQL the writer keeps its connection between batches (the pool pings every
    // connection it takes back); SQLite's one connection is every writer's, so it goes back.
    let keep = db.backend() == Backend::Postgres;
    let mut held = None;
    // `Db::close` waits for every pooled connection, the kept one too: it goes back then.
    let closed = db.pool().close_event();
    tokio::pin!(closed);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = queue.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            () = &mut closed, if held.is_some() => {
                held = None;
                continue;
            }
        }
        metrics::histogram!("sichat_group_commit_writes", "writer" => name).record(batch.len() as f64);
        let answers = match together(&db, &mut held, &batch).await {
            Ok(answers) => answers,
            Err(e) => {
                // The connection goes back to the pool, which tests it.
                held = None;
                tracing::warn!(writer = name, error = %e, writes = batch.len(), "group commit failed; writing one by one");
                let mut answers = Vec::with_capacity(batch.len());
                for (job, _) in &batch {
                    answers.push(alone(&db, job).await);
                }
                answers
            }
        };
        if !keep {
            held = None;
        }
        for ((_, reply), answer) in batch.drain(..).zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// The whole batch in one transaction; any error rolls all of it back. Single writes run
/// in their order, then each group's items together.
async fn together(
    db: &Db,
    held: &mut Option<PoolConnection<sqlx::Any>>,
    batch: &[Queued],
) -> Result<Vec<Answer>, sqlx::Error> {
    // A database closed while this writer kept a connection takes no more writes, even
    // if the close event has not reached the loop yet.
    if db.pool().is_closed() {
        *held = None;
        return Err(sqlx::Error::PoolClosed);
    }
    let conn = match held {
        Some(conn) => conn,
        None => held.insert(db.pool().acquire().await?),
    };
    let mut tx = conn.begin().await?;
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(batch.len());
    // Each group met in the batch: where its items are, and the items.
    let mut groups: Vec<(&Arc<dyn AnyGroup>, Positions, Vec<Item>)> = Vec::new();
    for (i, (job, _)) in batch.iter().enumerate() {
        match job {
            Job::One(work) => answers.push(Some(Ok(work(&mut tx).await?))),
            Job::Grouped(group, item) => {
                answers.push(None);
                match groups.iter_mut().find(|(g, ..)| Arc::ptr_eq(g, group)) {
                    Some((_, at, items)) => {
                        at.push(i);
                        items.push(item.clone());
                    }
                    None => groups.push((group, vec![i], vec![item.clone()])),
                }
            }
        }
    }
    for (group, at, items) in groups {
        for (i, out) in at.into_iter().zip(group.write_all(&mut tx, items).await?) {
            answers[i] = Some(Ok(out));
        }
    }
    tx.commit().await?;
    Ok(answers.into_iter().map(|a| a.unwrap_or_else(|| Err(wrong_type()))).collect())
}

async fn alone(db: &Db, job: &Job) -> Answer {
    let mut tx = db.pool().begin().await?;
    let out = match job {
        Job::One(work) => work(&mut tx).await?,
        Job::Grouped(group, item) => {
            group.write_all(&mut tx, vec![item.clone()]).await?.pop().ok_or_else(wrong_type)?
        }
    };
    tx.commit().await?;
    Ok(out)
}
