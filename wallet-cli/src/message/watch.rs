//! `sichat message watch`: live delivery over the pickup WebSocket, reconnecting with backoff.

use super::inbox::{sender_label, text_of, view};
use super::*;
use std::time::Duration;

/// Ping the node this often while watching; give up on a connection silent for 3 times as long.
const PING_EVERY: Duration = Duration::from_secs(30);
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How a live connection ended.
pub(super) enum End {
    /// Ctrl-C.
    Stopped,
    /// The connection dropped or could not be made: try again.
    Lost(anyhow::Error),
    /// The node ended the session (they last 15 minutes): log in again at once.
    Renew,
}

pub(super) struct Watching<'a> {
    ctx: &'a Ctx,
    w: &'a Wallet,
    pass: &'a str,
    opener: Opener,
    seen_drops: HashSet<Dropped>,
    /// Some connection went live before: say "Reconnected" from now on.
    ever_live: bool,
    /// The current attempt went live.
    went_live: bool,
    /// Reconnecting only to renew the session: nothing to tell.
    renewing: bool,
    stop: tokio::sync::watch::Receiver<bool>,
}

pub(super) async fn watch(ctx: &Ctx) -> Result<()> {
    need_node(&wallet::read_profile(&ctx.dir)?)?;
    let (w, pass) = ctx.open()?;
    let (tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    let mut st = Watching {
        ctx,
        w: &w,
        pass: &pass,
        opener: Opener::new(ctx, &w)?,
        seen_drops: HashSet::new(),
        ever_live: false,
        went_live: false,
        renewing: false,
        stop,
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        match st.connect_once().await? {
            End::Stopped => break,
            End::Renew => {
                st.renewing = true;
                st.went_live = false;
                backoff = Duration::from_secs(1);
                continue;
            }
            End::Lost(e) => {
                // A connection that worked starts the backoff again from one second.
                st.renewing = false;
                if std::mem::take(&mut st.went_live) {
                    backoff = Duration::from_secs(1);
                }
                eprintln!("Connection to your node lost ({e:#}); reconnecting in {} s …", backoff.as_secs());
            }
        }
        let mut stop = st.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    if !ctx.json {
        eprintln!("Stopped watching.");
    }
    Ok(())
}

impl Watching<'_> {
    /// Log in, connect, and receive until the connection ends. `Err` only for what
    /// retrying cannot fix (the node refuses this device, the wallet cannot be written).
    async fn connect_once(&mut self) -> Result<End> {
        let mut c = match login(self.ctx, self.w, self.pass).await {
            Ok(c) => c,
            Err(e) => {
                return match e.downcast_ref::<ServerError>() {
                    Some(s) if (400..500).contains(&s.status) && s.status != 429 && s.status != 408 => Err(e),
                    _ => Ok(End::Lost(e)),
                }
            }
        };
        let r = self.receive(&c).await;
        c.logout().await;
        r
    }

    async fn receive(&mut self, c: &Client) -> Result<End> {
        let token = c.token().ok_or_else(|| anyhow!("not logged in"))?;
        let mut p = match Pickup::connect(c.base(), token).await {
            Ok(p) => p,
            Err(e) => return Ok(End::Lost(e)),
        };
        if let Err(e) = p.live(true).await {
            return Ok(End::Lost(e));
        }
        if self.ever_live {
            if !std::mem::take(&mut self.renewing) {
                eprintln!("Reconnected.");
            }
        } else if !self.ctx.json {
            eprintln!("Watching for messages to {} (Ctrl-C to stop) …", self.w.profile.did);
        }
        self.ever_live = true;
        self.went_live = true;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut heard = tokio::time::Instant::now();
        let mut stop = self.stop.clone();
        loop {
            let event = tokio::select! {
                _ = stop.wait_for(|s| *s) => {
                    let _ = p.live(false).await;
                    p.close().await;
                    return Ok(End::Stopped);
                }
                _ = ping.tick() => {
                    if heard.elapsed() > PING_EVERY * 3 {
                        return Ok(End::Lost(anyhow!("your node stopped answering")));
                    }
                    if let Err(e) = p.ping().await {
                        return Ok(End::Lost(e));
                    }
                    continue;
                }
                event = p.next() => event,
            };
            heard = tokio::time::Instant::now();
            match event {
                Err(e) => return Ok(End::Lost(e)),
                Ok(None) if p.session_expired() => return Ok(End::Renew),
                Ok(None) if p.ended().is_some() => {
                    let why = p.ended().unwrap_or_default();
                    bail!("your node closed the message connection: {why}")
                }
                Ok(None) if p.going_away() => {
                    return Ok(End::Lost(anyhow!("your node is shutting down or restarting")))
                }
                Ok(None) => return Ok(End::Lost(anyhow!("your node closed the connection"))),
                Ok(Some(Event::Delivery(items))) => {
                    let taken = take(self.ctx, self.pass, &self.opener, &items).await?;
                    for m in &taken.fresh {
                        self.show(m);
                    }
                    if !taken.ack.is_empty() {
                        if let Err(e) = p.received(&taken.ack).await {
                            return Ok(End::Lost(e));
                        }
                    }
                }
                Ok(Some(Event::Status(s))) => {
                    let new: Vec<Dropped> =
                        s.dropped.into_iter().filter(|d| self.seen_drops.insert(d.clone())).collect();
                    warn_dropped(&new);
                    if !new.is_empty() {
                        if let Err(e) = p.received(&[]).await {
                            return Ok(End::Lost(e));
                        }
                    }
                }
                Ok(Some(Event::Problem { code, comment })) => {
                    return Ok(End::Lost(anyhow!("your node reported a problem: {comment} ({code})")))
                }
                Ok(Some(Event::Other)) => {}
            }
        }
    }

    fn show(&self, m: &StoredMessage) {
        if self.ctx.json {
            println!("{}", view(m, &self.w.contacts));
            return;
        }
        let folder = if m.folder == "inbox" { String::new() } else { format!(" [{}]", m.folder) };
        let body = match (&m.unreadable, text_of(m)) {
            (Some(_), _) => "(cannot be read on this device)".to_owned(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => format!("(a {} message)", m.kind),
        };
        println!("[{}] {}{folder}: {body}", date(m.received_time), sender_label(m, &self.w.contacts));
        println!("    id {}", m.id);
    }
}
