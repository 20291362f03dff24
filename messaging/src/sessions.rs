//! How many pickup WebSockets each device and each account holds open: a device that opens
//! sessions without end would otherwise grow the node's memory without bound. The counts
//! are per process; with N replicas a device may hold up to N times the limit (each
//! replica still bounds its own memory).

use crate::MessagingError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open sessions per device and per account, with their limits.
pub struct Sessions {
    per_device: usize,
    per_account: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    devices: HashMap<String, usize>,
    accounts: HashMap<String, usize>,
}

/// One open session, counted until dropped.
pub struct Slot {
    sessions: Arc<Sessions>,
    device_id: String,
    user_id: String,
}

impl Sessions {
    pub fn new(per_device: usize, per_account: usize) -> Self {
        Self { per_device: per_device.max(1), per_account: per_account.max(1), open: Default::default() }
    }

    /// Count one more session of `device_id` (of `user_id`), or say why not.
    pub fn open(self: &Arc<Self>, user_id: &str, device_id: &str) -> Result<Slot, MessagingError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let device = open.devices.get(device_id).copied().unwrap_or(0);
        let account = open.accounts.get(user_id).copied().unwrap_or(0);
        if device >= self.per_device {
            return Err(MessagingError::TooManySessions(format!(
                "this device already has {device} message connections open (at most {}); close one, e.g. another \
                 `sichat message watch`",
                self.per_device
            )));
        }
        if account >= self.per_account {
            return Err(MessagingError::TooManySessions(format!(
                "your devices already have {account} message connections open (at most {} per account); close one",
                self.per_account
            )));
        }
        *open.devices.entry(device_id.to_owned()).or_default() += 1;
        *open.accounts.entry(user_id.to_owned()).or_default() += 1;
        Ok(Slot { sessions: self.clone(), device_id: device_id.to_owned(), user_id: user_id.to_owned() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.sessions.open.lock().unwrap_or_else(|p| p.into_inner());
        let open = &mut *open;
        for (map, key) in [(&mut open.devices, &self.device_id), (&mut open.accounts, &self.user_id)] {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_capped_per_device_and_per_account_and_freed_when_closed() {
        let s = Arc::new(Sessions::new(2, 3));
        let a1 = s.open("u", "a").unwrap();
        let _a2 = s.open("u", "a").unwrap();
        assert!(matches!(s.open("u", "a"), Err(MessagingError::TooManySessions(_))), "per device");
        let _b1 = s.open("u", "b").unwrap();
        assert!(matches!(s.open("u", "b"), Err(MessagingError::TooManySessions(_))), "per account");
        let _other = s.open("v", "c").unwrap();
        drop(a1);
        let _b2 = s.open("u", "b").unwrap();
        assert!(s.open("u", "a").is_err());
    }
}
