//! Reading a certificate's expiry (`notAfter`) from its DER encoding.
//!
//! The TLS probes need only the validity period of each certificate in a chain; the chain itself
//! is verified by `rustls-webpki`. A general X.509 parser (x509-parser: nom, asn1-rs, der-parser,
//! oid-registry, time) would more than double the probe code in the agent binary for one field,
//! so this walks the few DER elements in front of it: Certificate, TBSCertificate, optional
//! version, serial, signature algorithm, issuer, validity.

use chrono::{DateTime, NaiveDate, Utc};

/// One DER element at the start of `input`: (tag, contents, rest).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Parses a UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, 0x18).
fn time(tag: u8, s: &[u8]) -> Option<DateTime<Utc>> {
    let (year, rest) = match tag {
        0x17 if s.len() == 13 => {
            let yy = digits(&s[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 15 => (digits(&s[..4])?, &s[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let f = |i: usize| digits(&rest[i..i + 2]);
    NaiveDate::from_ymd_opt(year as i32, f(0)?, f(2)?)?
        .and_hms_opt(f(4)?, f(6)?, f(8)?)
        .map(|t| t.and_utc())
}

/// The `notAfter` time of a DER certificate, `None` when it cannot be read.
pub fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (0x30, cert, _) = element(der)? else { return None };
    let (0x30, tbs, _) = element(cert)? else { return None };
    let (tag, _, mut rest) = element(tbs)?;
    if tag == 0xa0 {
        // [0] EXPLICIT version, then the serial number.
        rest = element(rest)?.2;
    }
    // signature algorithm, issuer
    rest = element(rest)?.2;
    rest = element(rest)?.2;
    let (0x30, validity, _) = element(rest)? else {
        return None;
    };
    let (_, _, after) = element(validity)?;
    let (tag, value, _) = element(after)?;
    time(tag, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_time_forms_are_read() {
        assert_eq!(
            time(0x17, b"491231235959Z").unwrap().to_rfc3339(),
            "2049-12-31T23:59:59+00:00"
        );
        assert_eq!(
            time(0x17, b"500101000000Z").unwrap().to_rfc3339(),
            "1950-01-01T00:00:00+00:00"
        );
        assert_eq!(
            time(0x18, b"20610228120000Z").unwrap().to_rfc3339(),
            "2061-02-28T12:00:00+00:00"
        );
        assert!(time(0x18, b"2061022812000+0100").is_none());
        assert!(not_after(b"\x30\x03\x02\x01\x00").is_none());
    }
}
