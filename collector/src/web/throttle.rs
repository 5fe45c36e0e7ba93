//! Failed-login throttling: after too many failed log-ins for one username from one address
//! within a window, further attempts are refused without checking the password until the
//! window has passed.
//!
//! Keyed by (lower-cased username, client address) so that someone guessing cannot lock the
//! real user out from elsewhere. Memory is bounded: at most [`MAX_KEYS`] keys are kept, the
//! expired ones dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Failed log-ins allowed per key within [`WINDOW_MINUTES`].
pub const MAX_FAILURES: u32 = 5;
/// The window, and how long a key stays refused after its last failure.
pub const WINDOW_MINUTES: i64 = 15;
/// Keys kept at most.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: DateTime<Utc>,
}

/// The failures seen, per (username, address).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<(String, Option<IpAddr>), Failures>>,
}

fn key(username: &str, addr: Option<IpAddr>) -> (String, Option<IpAddr>) {
    (username.to_lowercase(), addr)
}

impl LoginThrottle {
    /// When refused now, the time the key is allowed again.
    pub fn refused_until(&self, username: &str, addr: Option<IpAddr>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let f = map.get(&key(username, addr))?;
        let until = f.last + Duration::minutes(WINDOW_MINUTES);
        (f.count >= MAX_FAILURES && now < until).then_some(until)
    }

    /// Records a failed log-in.
    pub fn failed(&self, username: &str, addr: Option<IpAddr>, now: DateTime<Utc>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let window = Duration::minutes(WINDOW_MINUTES);
        if map.len() >= MAX_KEYS {
            map.retain(|_, f| now - f.last < window);
            if map.len() >= MAX_KEYS {
                // Still full of live keys: forget the oldest one.
                if let Some(oldest) = map.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone()) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map
            .entry(key(username, addr))
            .or_insert(Failures { count: 0, last: now });
        if now - entry.last >= window {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
    }

    /// Forgets the failures of a key after a successful log-in.
    pub fn succeeded(&self, username: &str, addr: Option<IpAddr>) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(username, addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit_within_the_window_and_forgives_after_it() {
        let t = LoginThrottle::default();
        let now = Utc::now();
        let ip: Option<IpAddr> = "192.0.2.7".parse().ok();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.refused_until("Alice", ip, now), None, "attempt {i}");
            t.failed("Alice", ip, now);
        }
        let until = t.refused_until("alice", ip, now).expect("refused after the limit");
        assert_eq!(until, now + Duration::minutes(WINDOW_MINUTES));
        assert_eq!(
            t.refused_until("alice", "192.0.2.8".parse().ok(), now),
            None,
            "other address"
        );
        assert_eq!(t.refused_until("bob", ip, now), None, "other user");
        assert!(t.refused_until("alice", ip, until - Duration::seconds(1)).is_some());
        assert_eq!(t.refused_until("alice", ip, until), None);
        // An old failure does not count toward a new window.
        t.failed("alice", ip, until + Duration::minutes(1));
        assert_eq!(t.refused_until("alice", ip, until + Duration::minutes(1)), None);
        t.succeeded("ALICE", ip);
        assert_eq!(t.failures.lock().unwrap().len(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::default();
        let now = Utc::now();
        for i in 0..(MAX_KEYS + 10) {
            t.failed(&format!("user{i}"), None, now);
        }
        assert!(t.failures.lock().unwrap().len() <= MAX_KEYS);
    }
}
