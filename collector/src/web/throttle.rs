//! Failed-login throttling (hardened in issue 15): failures are counted per (account,
//! address), per address and per account within a window; once a count reaches its limit,
//! further attempts for that key are refused without checking the password until the window
//! has passed since its last failure.
//!
//! - per (account, address), [`MAX_FAILURES`]: someone guessing from one place is stopped
//!   without locking the real user out from elsewhere;
//! - per address, [`MAX_ADDRESS_FAILURES`] (IPv6 by /64): one place trying many accounts;
//! - per account, [`MAX_ACCOUNT_FAILURES`]: guessing one account from many addresses.
//!
//! Memory is bounded whatever is typed: accounts are kept as a 16-byte hash of the lower-cased
//! username (never its text), addresses as addresses, at most [`MAX_KEYS`] keys in all. When
//! the table is full, expired keys go first, then the oldest key that is not locked out; a
//! locked-out key is never dropped to make room (a full table of locked keys records no new
//! key, and every attempt still pays the argon2 check).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

/// Failed log-ins allowed per (account, address) within [`WINDOW_MINUTES`].
pub const MAX_FAILURES: u32 = 5;
/// Failed log-ins allowed per address (any account) within the window.
pub const MAX_ADDRESS_FAILURES: u32 = 20;
/// Failed log-ins allowed per account (any address) within the window.
pub const MAX_ACCOUNT_FAILURES: u32 = 20;
/// The window, and how long a key stays refused after its last failure.
pub const WINDOW_MINUTES: i64 = 15;
/// Keys kept at most (each a fixed size: a 16-byte hash and/or an address, and a count).
pub const MAX_KEYS: usize = 30_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: DateTime<Utc>,
}

/// What a count is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Pair([u8; 16], Option<IpAddr>),
    Address(IpAddr),
    Account([u8; 16]),
}

impl Key {
    fn limit(self) -> u32 {
        match self {
            Key::Pair(..) => MAX_FAILURES,
            Key::Address(_) => MAX_ADDRESS_FAILURES,
            Key::Account(_) => MAX_ACCOUNT_FAILURES,
        }
    }
}

/// Why an attempt is refused, for the message shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures for this account from this address.
    AccountFromAddress,
    /// Too many failures from this address.
    Address,
    /// Too many failures for this account.
    Account,
}

/// The failures seen.
#[derive(Debug)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<Key, Failures>>,
    max_keys: usize,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::with_max_keys(MAX_KEYS)
    }
}

/// A fixed-size stand-in for a username: memory does not grow with what is typed, and the
/// table never holds the text (a password typed into the username box).
fn account(username: &str) -> [u8; 16] {
    let digest = Sha256::digest(username.to_lowercase().as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// IPv6 addresses count by their /64 (one host usually holds the whole prefix).
fn place(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

fn keys(username: &str, addr: Option<IpAddr>) -> Vec<Key> {
    let a = account(username);
    let mut k = vec![Key::Pair(a, addr), Key::Account(a)];
    if let Some(ip) = addr {
        k.push(Key::Address(place(ip)));
    }
    k
}

impl LoginThrottle {
    /// A throttle keeping at most `max_keys` keys.
    pub fn with_max_keys(max_keys: usize) -> Self {
        LoginThrottle {
            failures: Mutex::default(),
            max_keys: max_keys.max(3),
        }
    }

    /// When refused now, the time the attempt is allowed again and why.
    pub fn refused(
        &self,
        username: &str,
        addr: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, Refusal)> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys(username, addr)
            .into_iter()
            .filter_map(|k| {
                let f = map.get(&k)?;
                let until = f.last + Duration::minutes(WINDOW_MINUTES);
                let why = match k {
                    Key::Pair(..) => Refusal::AccountFromAddress,
                    Key::Address(_) => Refusal::Address,
                    Key::Account(_) => Refusal::Account,
                };
                (f.count >= k.limit() && now < until).then_some((until, why))
            })
            .max_by_key(|(until, _)| *until)
    }

    /// When refused now, the time the attempt is allowed again.
    pub fn refused_until(&self, username: &str, addr: Option<IpAddr>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.refused(username, addr, now).map(|(until, _)| until)
    }

    /// Records a failed log-in.
    pub fn failed(&self, username: &str, addr: Option<IpAddr>, now: DateTime<Utc>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let window = Duration::minutes(WINDOW_MINUTES);
        for k in keys(username, addr) {
            if !map.contains_key(&k) && !make_room(&mut map, self.max_keys, now, window) {
                continue;
            }
            let entry = map.entry(k).or_insert(Failures { count: 0, last: now });
            if now - entry.last >= window {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }

    /// Forgets the (account, address) failures after a successful log-in. The per-address and
    /// per-account counts stay: one success does not forgive guessing elsewhere.
    pub fn succeeded(&self, username: &str, addr: Option<IpAddr>) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Key::Pair(account(username), addr));
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one more key; `false` when every key is live and locked out.
fn make_room(map: &mut HashMap<Key, Failures>, max_keys: usize, now: DateTime<Utc>, window: Duration) -> bool {
    if map.len() < max_keys {
        return true;
    }
    map.retain(|_, f| now - f.last < window);
    if map.len() < max_keys {
        return true;
    }
    // Still full of live keys: forget the one with the fewest failures (the oldest of those)
    // that is not locked out, never a locked one.
    let victim = map
        .iter()
        .filter(|(k, f)| f.count < k.limit())
        .min_by_key(|(_, f)| (f.count, f.last))
        .map(|(k, _)| *k);
    match victim {
        Some(k) => {
            map.remove(&k);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn refuses_after_the_limit_within_the_window_and_forgives_after_it() {
        let t = LoginThrottle::default();
        let now = Utc::now();
        let a = ip("192.0.2.7");
        for i in 0..MAX_FAILURES {
            assert_eq!(t.refused_until("Alice", a, now), None, "attempt {i}");
            t.failed("Alice", a, now);
        }
        let until = t.refused_until("alice", a, now).expect("refused after the limit");
        assert_eq!(until, now + Duration::minutes(WINDOW_MINUTES));
        assert_eq!(t.refused_until("alice", ip("192.0.2.8"), now), None, "other address");
        assert_eq!(t.refused_until("bob", a, now), None, "other user");
        assert!(t.refused_until("alice", a, until - Duration::seconds(1)).is_some());
        assert_eq!(t.refused_until("alice", a, until), None);
        t.failed("alice", a, until + Duration::minutes(1));
        assert_eq!(t.refused_until("alice", a, until + Duration::minutes(1)), None);
    }

    /// Attack 1: huge and many usernames neither grow memory per key nor evict the lockout of
    /// the account under attack.
    #[test]
    fn a_flood_of_long_usernames_is_bounded_and_never_clears_a_lockout() {
        let t = LoginThrottle::with_max_keys(300);
        let now = Utc::now();
        let attacker = ip("198.51.100.1");
        for _ in 0..MAX_FAILURES {
            t.failed("alice", attacker, now);
        }
        assert!(t.refused_until("alice", attacker, now).is_some());
        // Many places, each under its own limit, each with megabyte-sized usernames.
        let big = "x".repeat(10_000);
        for i in 0..1_000u32 {
            let from = Some(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
            t.failed(&format!("{big}{i}"), from, now + Duration::seconds(1));
        }
        assert!(t.len() <= 300, "{} keys", t.len());
        assert!(
            t.refused_until("alice", attacker, now + Duration::seconds(2)).is_some(),
            "the lockout survived the flood"
        );
        let kept = std::mem::size_of::<Key>() + std::mem::size_of::<Failures>();
        assert!(kept <= 64, "a key takes {kept} bytes whatever was typed");
    }

    /// Attack 2: one account guessed from many addresses is locked; one address trying many
    /// accounts is locked.
    #[test]
    fn guessing_from_many_addresses_or_many_accounts_is_locked_too() {
        let t = LoginThrottle::default();
        let now = Utc::now();
        for i in 0..MAX_ACCOUNT_FAILURES {
            let from = Some(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, i as u8)));
            assert!(t.refused("alice", from, now).is_none(), "attempt {i}");
            t.failed("alice", from, now);
        }
        let fresh = ip("192.0.2.200");
        assert_eq!(t.refused("alice", fresh, now).map(|r| r.1), Some(Refusal::Account));
        assert!(t.refused("bob", fresh, now).is_none());

        let one = ip("2001:db8::1");
        for i in 0..MAX_ADDRESS_FAILURES {
            t.failed(&format!("user{i}"), one, now);
        }
        // Another host in the same /64 is the same place.
        assert_eq!(
            t.refused("carol", ip("2001:db8::2"), now).map(|r| r.1),
            Some(Refusal::Address)
        );
        assert!(t.refused("carol", ip("2001:db9::2"), now).is_none());
    }
}
