//! The compliance score: one definition for the dashboard and the compliance reports.
//!
//! The score of a set of findings is the share of judged findings (pass, fail, error; not
//! applicable ones do not count) that pass, in whole percent rounded half up; `None` when no
//! finding is judged. A failing finding covered by an accepted risk is a documented exception,
//! not a passing safeguard: it counts against the score on the dashboard and in the report
//! alike, and both show the accepted risks beside the score. (Before, the dashboard counted
//! them as passing and the report did not, so a practice manager saw two different numbers.)

/// `pass` passing findings of `judged` judged ones, in percent; `None` when `judged` is 0.
pub fn compliance_score(pass: u32, judged: u32) -> Option<u8> {
    (judged > 0).then(|| {
        let (pass, judged) = (u64::from(pass.min(judged)), u64::from(judged));
        ((pass * 100 + judged / 2) / judged) as u8
    })
}

#[cfg(test)]
mod tests {
    use super::compliance_score;

    #[test]
    fn share_of_judged_findings_that_pass_rounded_half_up() {
        assert_eq!(compliance_score(0, 0), None);
        assert_eq!(compliance_score(0, 3), Some(0));
        assert_eq!(compliance_score(3, 3), Some(100));
        assert_eq!(compliance_score(1, 4), Some(25));
        assert_eq!(compliance_score(2, 3), Some(67));
        assert_eq!(compliance_score(1, 3), Some(33));
        assert_eq!(compliance_score(1, 8), Some(13), "12.5 rounds up");
        assert_eq!(compliance_score(u32::MAX, u32::MAX), Some(100), "no overflow");
    }
}
