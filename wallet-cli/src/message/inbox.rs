//! `sichat message inbox` and `read`: the wallet's stored messages, fetched first from the node.

use super::*;
use crate::wallet::Contact;
use sichat_accounts::protocol::SHARE_MESSAGE_TYPE;

/// Take in, as `message inbox` does, what waits on the node for this device (for `sichat
/// export`, before the node goes). Returns how many came.
pub(crate) async fn fetch_waiting(ctx: &Ctx, w: &Wallet, pass: &str, c: &Client) -> Result<usize> {
    let opener = Opener::new(ctx, w)?;
    let fetched = fetch_all(ctx, pass, &opener, c).await.map_err(|e| explain(e, &[NO_MESSAGING]))?;
    warn_dropped(&fetched.dropped);
    Ok(fetched.fresh.len())
}

/// `offline`: list what the wallet holds without asking the node. A node that does not
/// answer (down, or gone) is the same, with a warning: what the wallet holds needs no node.
pub(super) async fn inbox(ctx: &Ctx, requests: bool, limit: usize, offline: bool) -> Result<()> {
    let profile = wallet::read_profile(&ctx.dir)?;
    if !offline {
        need_node(&profile)?;
    }
    let (w, pass) = ctx.open()?;
    let online = match offline {
        true => None,
        false => {
            progress(ctx, "Fetching new messages from your node …");
            match login(ctx, &w, &pass).await {
                Ok(c) => Some(c),
                Err(e) if crate::client::unreachable(&e) => {
                    eprintln!(
                        "warning: {e:#}\nShowing the messages this wallet holds; new ones wait on your node until \
                         it is back (`--offline` skips asking)."
                    );
                    None
                }
                Err(e) => return Err(e),
            }
        }
    };
    let (fetched, synced) = match online {
        Some(mut c) => {
            let opener = Opener::new(ctx, &w)?;
            let fetched = fetch_all(ctx, &pass, &opener, &c).await;
            // What came in is kept on the node too (sealed), and what other devices kept there comes in.
            let synced = match &fetched {
                Ok(_) => crate::history::sync_saved(ctx, &pass, &c, None).await,
                Err(_) => Ok(Default::default()),
            };
            // What this wallet sent and the node has not finished with: handed over again if lost.
            if fetched.is_ok() {
                if let Err(e) = super::sent::settle(ctx, &w, &c, None).await {
                    eprintln!("warning: could not check on the messages you sent: {e:#}");
                }
            }
            c.logout().await;
            (fetched, synced)
        }
        None => (Ok(Fetched::default()), Ok(Default::default())),
    };
    let fetched = fetched.map_err(|e| explain(e, &[NO_MESSAGING]))?;
    warn_dropped(&fetched.dropped);
    let all = match synced {
        Ok(s) if s.received_messages > 0 => Wallet::open(&ctx.dir, &pass)?.messages,
        Ok(_) => fetched.all.unwrap_or(w.messages),
        Err(e) => {
            eprintln!("warning: your history on the node is not up to date ({e:#}); `sichat history sync` retries");
            fetched.all.unwrap_or(w.messages)
        }
    };
    let folder = if requests { "requests" } else { "inbox" };
    let mut shown: Vec<&StoredMessage> = all.iter().filter(|m| m.folder == folder).collect();
    shown.sort_by(|a, b| b.received_time.cmp(&a.received_time).then_with(|| b.id.cmp(&a.id)));
    let total = shown.len();
    shown.truncate(limit);
    let other_unread = all.iter().filter(|m| m.folder != folder && !m.read).count();
    let out = json!({
        "folder": folder,
        "fetched": fetched.fresh.len(),
        "total": total,
        "messages": shown.iter().map(|m| view(m, &w.contacts)).collect::<Vec<_>>(),
        "dropped": fetched.dropped,
    });
    ctx.print(&out, |_| {
        if !fetched.fresh.is_empty() {
            println!("{} new message(s).", fetched.fresh.len());
        }
        if shown.is_empty() {
            println!("No messages in {folder}.");
        }
        for m in &shown {
            let unread = if m.read { ' ' } else { '*' };
            println!("{unread} {}  {}  {}  {}", m.id, date(m.received_time), sender_label(m, &w.contacts), preview(m));
        }
        if total > shown.len() {
            println!("({} older not shown: --limit N)", total - shown.len());
        }
        if other_unread > 0 {
            let other = if requests { "sichat message inbox" } else { "sichat message inbox --requests" };
            println!("{other_unread} unread in the other folder: `{other}`.");
        }
        if !shown.is_empty() {
            println!("Read one with `sichat message read ID`.");
        }
    })
}

pub(super) fn text_of(m: &StoredMessage) -> Option<&str> {
    (m.kind == TEXT_TYPE).then(|| m.body.get("text").and_then(Value::as_str)).flatten()
}

pub(super) fn preview(m: &StoredMessage) -> String {
    if let Some(why) = &m.unreadable {
        let why: String = why.chars().take(80).collect();
        return format!("(unreadable, kept as received: {why})");
    }
    match text_of(m) {
        Some(t) => {
            let line = t.lines().next().unwrap_or_default();
            let mut p: String = line.chars().take(60).collect();
            if p.len() < t.len() {
                p.push('…');
            }
            p
        }
        None if m.kind == SHARE_MESSAGE_TYPE => {
            "(a share of their recovery key: keep it; `sichat recovery approve` only when they ask you)".into()
        }
        None => format!("(a {} message)", m.kind),
    }
}

pub(super) fn sender_label(m: &StoredMessage, contacts: &[Contact]) -> String {
    let who = if m.from.is_empty() { &m.vouched_from } else { &m.from };
    let named = match contacts::name_of(contacts, who) {
        Some(name) => format!("{name} ({who})"),
        None => who.clone(),
    };
    if m.sender_mismatch && m.unreadable.is_none() {
        format!("{named} [SENDER MISMATCH: the node vouched for {}]", m.vouched_from)
    } else {
        named
    }
}

/// A message as `--json` shows it.
pub(super) fn view(m: &StoredMessage, contacts: &[Contact]) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if m.kind == SHARE_MESSAGE_TYPE {
        v["body"]["share"] = json!("(kept in the wallet)");
    }
    v["text"] = json!(text_of(m));
    let who = if m.from.is_empty() { &m.vouched_from } else { &m.from };
    v["from_contact"] = json!(contacts::name_of(contacts, who));
    v
}

/// Find a kept message by id, its sender's id, or a unique prefix of either.
pub(super) fn find<'a>(messages: &'a mut [StoredMessage], id: &str) -> Result<&'a mut StoredMessage> {
    if let Some(i) = messages.iter().position(|m| m.id == id || m.message_id == id) {
        return Ok(&mut messages[i]);
    }
    let matching: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| id.len() >= 4 && (m.id.starts_with(id) || m.message_id.starts_with(id)))
        .map(|(i, _)| i)
        .collect();
    match matching.as_slice() {
        [i] => Ok(&mut messages[*i]),
        [] => bail!("no message {id} in this wallet: `sichat message inbox` fetches and lists them"),
        more => bail!("{id} could be {} messages: give more of the id", more.len()),
    }
}

pub(super) fn read(ctx: &Ctx, id: &str) -> Result<()> {
    let (w, pass) = ctx.open()?;
    let contacts = w.contacts.clone();
    let mut messages = w.messages;
    let m = find(&mut messages, id)?.clone();
    if !m.read {
        let key = m.id.clone();
        wallet::update(&ctx.dir, &pass, |w| {
            if let Some(k) = w.messages.iter_mut().find(|k| k.id == key) {
                k.read = true;
            }
            Ok(())
        })?;
    }
    ctx.print(&view(&m, &contacts), |_| {
        println!("From:      {}", sender_label(&m, &contacts));
        if m.sender_mismatch && m.unreadable.is_none() {
            println!(
                "           WARNING: the envelope proves {}, the node vouched for {}",
                if m.from.is_empty() { "no sender" } else { &m.from },
                m.vouched_from
            );
        }
        println!("Folder:    {}", m.folder);
        if let Some(t) = m.created_time {
            println!("Written:   {} (the sender's clock)", date(t as i64 * 1000));
        }
        println!("Received:  {}", date(m.received_time));
        println!("Id:        {} (sender's id {})", m.id, m.message_id);
        if m.presentation {
            println!("Attached:  a credential presentation (checked by your node's policy)");
        }
        if let Some(thid) = &m.thid {
            println!("Thread:    {thid}");
        }
        println!();
        match (&m.unreadable, text_of(&m)) {
            (Some(why), _) => {
                println!("(This device cannot read it: {why})");
                println!("(The envelope is kept in this wallet as it came: `--json` shows it as `raw`.)");
            }
            (None, Some(text)) => println!("{text}"),
            (None, None) => {
                println!("(a {} message)", m.kind);
                println!("{}", serde_json::to_string_pretty(&m.body).unwrap_or_default());
            }
        }
    })
}
