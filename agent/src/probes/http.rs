//! A small HTTP/1.1 exchange over an established stream: one request with `Connection: close`,
//! the status line and headers, and at most a bounded prefix of the body (de-chunked).
//!
//! The body is read only when a probe needs it (an `https` probe's `body_contains`, a `fhir`
//! probe recognising its CapabilityStatement) and never leaves the probe.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// The answer as far as it was read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    /// At most the requested number of body bytes.
    pub body: Vec<u8>,
    /// When the first byte of the answer arrived.
    pub first_byte: Instant,
}

/// Why the exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection failed during the HTTP exchange: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection without an answer")]
    Closed,
    #[error("the answer is not HTTP: {0}")]
    Malformed(String),
}

/// Writes the request for `path` on `host` (the Host header value) and reads the answer,
/// keeping at most `body_limit` body bytes.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    host: &str,
    path: &str,
    accept: &str,
    body_limit: usize,
) -> Result<Response, HttpError> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rounds-agent/{}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut first_byte = None;
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Closed);
        }
        first_byte.get_or_insert_with(Instant::now);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(HttpError::Malformed("response head longer than 16 KiB".into()));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            HttpError::Malformed(format!(
                "status line `{}`",
                status_line.chars().take(40).collect::<String>()
            ))
        })?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let content_type = header("content-type");
    let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let mut body = buf.split_off(head_end);
    let first_byte = first_byte.unwrap_or_else(Instant::now);
    if method == "HEAD" || body_limit == 0 || status == 204 || status == 304 {
        return Ok(Response {
            status,
            content_type,
            body: Vec::new(),
            first_byte,
        });
    }
    // Raw bytes to read: enough for `body_limit` decoded bytes (chunk framing is small).
    let raw_limit = body_limit + body_limit / 8 + 64;
    let want = length.map_or(raw_limit, |l| l.min(raw_limit));
    // A chunked body is complete at its last chunk, even if the server keeps the connection.
    while body.len() < want && !(chunked && body.ends_with(b"0\r\n\r\n")) {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut body = if chunked { dechunk(&body) } else { body };
    body.truncate(body_limit);
    Ok(Response {
        status,
        content_type,
        body,
        first_byte,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The data of a chunked body, as far as it is complete.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    while let Some(eol) = find(raw, b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let data = &raw[eol + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if take < size || data.len() < size + 2 {
            break;
        }
        raw = &data[size + 2..];
    }
    out
}

/// The parts of a FHIR CapabilityStatement a probe reports; every other field is skipped
/// without being kept.
#[derive(Debug, serde::Deserialize)]
struct Capability {
    #[serde(rename = "resourceType")]
    resource_type: String,
    #[serde(rename = "fhirVersion", default)]
    fhir_version: Option<String>,
    #[serde(default)]
    software: Option<Software>,
}

#[derive(Debug, serde::Deserialize)]
struct Software {
    #[serde(default)]
    name: Option<String>,
}

/// `Ok((fhirVersion, software.name))` when `body` is a JSON CapabilityStatement, else why not.
pub fn capability_statement(body: &[u8]) -> Result<(Option<String>, Option<String>), String> {
    match serde_json::from_slice::<Capability>(body) {
        Ok(c) if c.resource_type == "CapabilityStatement" => Ok((c.fhir_version, c.software.and_then(|s| s.name))),
        Ok(c) => Err(format!(
            "metadata is a FHIR {} resource, not a CapabilityStatement",
            c.resource_type
        )),
        Err(_) => Err("metadata is not a FHIR JSON resource".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n"), b"Wikipedia");
        assert_eq!(dechunk(b"4\r\nWi"), b"Wi");
    }

    #[test]
    fn only_a_capability_statement_is_one() {
        let ok = br#"{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","software":{"name":"HAPI FHIR"},"rest":[]}"#;
        assert_eq!(
            capability_statement(ok),
            Ok((Some("4.0.1".into()), Some("HAPI FHIR".into())))
        );
        assert!(
            capability_statement(br#"{"resourceType":"OperationOutcome"}"#)
                .unwrap_err()
                .contains("OperationOutcome")
        );
        assert!(capability_statement(b"<html><body>Login</body></html>").is_err());
    }
}
