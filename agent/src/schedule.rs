//! Staggered schedules: every agent runs its cron schedules shifted by its own stable offset,
//! so a fleet whose checks are all "hourly" does not report at the top of the hour at once.
//!
//! The offset is derived from the agent id (`sha256("rounds-schedule-offset:" + agent_id)`,
//! taken modulo the spread), so one agent keeps the same offset across restarts and
//! configuration changes, and different agents fall evenly over the spread. The spread is the
//! schedule's shortest gap between two runs, capped at [`MAX_SPREAD`]: an hourly schedule runs
//! somewhere in the hour after its nominal time, a daily "0 0 2 * * *" between 02:00 and 03:00,
//! an every-minute schedule within its minute. Runs stay one period apart.

use chrono::{DateTime, TimeZone};
use sha2::{Digest, Sha256};

/// The largest offset a schedule is shifted by.
pub const MAX_SPREAD: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// How many upcoming gaps of a schedule are looked at to find its shortest one.
const GAPS_LOOKED_AT: usize = 8;

/// The spread of `schedule` seen from `now`: its shortest gap between the next runs, at most
/// [`MAX_SPREAD`]; zero when it runs fewer than twice more.
pub fn spread<Tz: TimeZone>(schedule: &cron::Schedule, now: &DateTime<Tz>) -> chrono::TimeDelta {
    let fires: Vec<DateTime<Tz>> = schedule.after(now).take(GAPS_LOOKED_AT + 1).collect();
    fires
        .windows(2)
        .map(|w| w[1].clone() - w[0].clone())
        .min()
        .map_or(chrono::TimeDelta::zero(), |gap| gap.min(MAX_SPREAD))
}

/// This agent's offset for `schedule`: stable for one agent id, in `[0, spread)` (millisecond
/// steps).
pub fn offset<Tz: TimeZone>(agent_id: &str, schedule: &cron::Schedule, now: &DateTime<Tz>) -> chrono::TimeDelta {
    let spread_ms = spread(schedule, now).num_milliseconds();
    if spread_ms <= 0 {
        return chrono::TimeDelta::zero();
    }
    let digest = Sha256::digest(format!("rounds-schedule-offset:{agent_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let ms = u64::from_be_bytes(first) % spread_ms.unsigned_abs();
    chrono::TimeDelta::milliseconds(i64::try_from(ms).unwrap_or(0))
}

/// The next run of `schedule` shifted by `offset`: strictly after the last run and after `now`
/// (see [`crate::run`]'s rule: a timer waking early does not fire twice, missed runs are
/// skipped), computed on the unshifted schedule and shifted back.
pub fn next_fire<Tz: TimeZone>(
    schedule: &cron::Schedule,
    offset: chrono::TimeDelta,
    last_fire: DateTime<Tz>,
    now: DateTime<Tz>,
) -> Option<DateTime<Tz>> {
    crate::run::next_fire(schedule, last_fire - offset, now - offset).map(|t| t + offset)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::Utc;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn schedule(s: &str) -> cron::Schedule {
        cron::Schedule::from_str(s).unwrap()
    }

    #[test]
    fn spread_is_the_shortest_gap_capped_at_an_hour() {
        let now = at("2026-11-24T10:20:00Z");
        assert_eq!(spread(&schedule("0 0 * * * *"), &now), chrono::TimeDelta::hours(1));
        assert_eq!(spread(&schedule("0 0 2 * * *"), &now), chrono::TimeDelta::hours(1));
        assert_eq!(
            spread(&schedule("0 */15 * * * *"), &now),
            chrono::TimeDelta::minutes(15)
        );
        assert_eq!(spread(&schedule("* * * * * *"), &now), chrono::TimeDelta::seconds(1));
        assert_eq!(spread(&schedule("0 0 0 1 1 * 2026"), &now), chrono::TimeDelta::zero());
    }

    #[test]
    fn the_offset_is_stable_per_agent_and_differs_between_agents() {
        let hourly = schedule("0 0 * * * *");
        let now = at("2026-11-24T10:20:00Z");
        let a = offset("67a0b54e230012d5c62f2b17cac97df7", &hourly, &now);
        assert_eq!(
            a,
            offset("67a0b54e230012d5c62f2b17cac97df7", &hourly, &at("2026-12-30T23:59:00Z"))
        );
        assert_ne!(a, offset("67a0b54e230012d5c62f2b17cac97df8", &hourly, &now));
        assert!(a >= chrono::TimeDelta::zero() && a < chrono::TimeDelta::hours(1), "{a}");
        assert_eq!(
            offset("x", &schedule("0 0 0 1 1 * 2026"), &now),
            chrono::TimeDelta::zero()
        );
    }

    #[test]
    fn a_fleet_of_hourly_agents_spreads_over_the_hour() {
        let hourly = schedule("0 0 * * * *");
        let now = at("2026-11-24T10:20:00Z");
        // 3,000 agents in 30 two-minute buckets: 100 each on average.
        let mut buckets = [0u32; 30];
        for i in 0..3000 {
            let o = offset(&format!("agent-{i:05}"), &hourly, &now);
            buckets[usize::try_from(o.num_minutes() / 2).unwrap()] += 1;
        }
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*min >= 60 && *max <= 140, "uneven spread: {buckets:?}");
    }

    #[test]
    fn runs_are_shifted_by_the_offset_and_stay_one_period_apart() {
        let hourly = schedule("0 0 * * * *");
        let off = chrono::TimeDelta::minutes(17);
        let start = at("2026-11-24T10:00:00Z");
        // From start: 10:17, not 10:00 or 11:00.
        let first = next_fire(&hourly, off, start, start).unwrap();
        assert_eq!(first, at("2026-11-24T10:17:00Z"));
        // Woken a moment early: not twice; then one hour later.
        let early = first - chrono::TimeDelta::milliseconds(2);
        assert_eq!(next_fire(&hourly, off, first, early), Some(at("2026-11-24T11:17:00Z")));
        // Missed runs are skipped, not caught up.
        let late = at("2026-11-24T14:30:00Z");
        assert_eq!(next_fire(&hourly, off, first, late), Some(at("2026-11-24T15:17:00Z")));
        // Started after the shifted time of this hour: the next hour's.
        let after = at("2026-11-24T10:40:00Z");
        assert_eq!(next_fire(&hourly, off, after, after), Some(at("2026-11-24T11:17:00Z")));
    }
}
