//! Per-file integrity tracking: what a watched log held at the last look, and what changed.
//!
//! For each file the state keeps its device and inode, size, owner, mode, modification time and
//! a hash of every 4 KiB checkpoint of the content seen (the last, partial one separately), so a
//! rewrite is located to the checkpoints it touched. A look ([`look`]) opens the file once and
//! reads its metadata from the open handle, so the content hashed is the file whose inode is
//! reported. It tells apart:
//!
//! - append or nothing (fine): the content seen is unchanged and the file grew or stayed;
//! - rewrite of bytes seen (tamper, with the checkpoint range);
//! - truncation (tamper), unless a rotated copy starts with the content seen (copytruncate);
//! - a new inode at the path: a rotation when the old inode (or a copy starting with the content
//!   seen) is found under a rotated name, else a replacement (tamper);
//! - deletion (tamper), unless the content went to a rotated name;
//! - mode widened to group or world writable, owner changed (tamper).
//!
//! Cost: a full look re-hashes every byte seen; an incremental look (the file grew, same inode)
//! re-hashes only the last partial checkpoint and the new bytes. The caller decides which (see
//! the check: full at the first look of a process and every few minutes, and whenever the size
//! did not grow).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rounds_protocol::obs::TamperEvent;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes per checkpoint.
pub const CHUNK: u64 = 4096;
/// Bytes of SHA-256 kept per checkpoint (128 bits: ample against accidental and forged matches
/// of a 4 KiB block).
const HASH_LEN: usize = 16;
/// Most rotated candidates whose content is compared.
const MAX_CANDIDATES: usize = 16;
/// Suffixes of compressed rotated copies, whose content cannot be compared.
const COMPRESSED: &[&str] = &[".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip"];

/// What a file looked like at the last look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileState {
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub mtime_ns: i128,
    /// Birth time, where the file system keeps one: a file recreated with a reused inode
    /// number is still told apart.
    #[serde(default)]
    pub created_ns: Option<i128>,
    /// Hex of the truncated SHA-256 of each full checkpoint, concatenated.
    pub chunks: String,
    /// Hex of the truncated SHA-256 of the last, partial checkpoint (empty when none).
    pub tail: String,
    /// When every byte seen was last re-hashed.
    pub verified_at: DateTime<Utc>,
    /// The newest tamper found on this path.
    #[serde(default)]
    pub last_tamper: Option<TamperEvent>,
}

impl FileState {
    fn full_chunks(&self) -> u64 {
        self.size / CHUNK
    }

    fn chunk(&self, i: u64) -> Option<&str> {
        let w = HASH_LEN * 2;
        let start = usize::try_from(i).ok()?.checked_mul(w)?;
        self.chunks.get(start..start + w)
    }

    /// SHA-256 (hex) over every checkpoint hash: names the content seen without revealing it.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.chunks.as_bytes());
        h.update(self.tail.as_bytes());
        hex::encode(h.finalize())
    }
}

/// File metadata the tracker compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub mtime_ns: i128,
    pub created_ns: Option<i128>,
}

impl Meta {
    pub fn of(m: &std::fs::Metadata) -> Self {
        let created_ns = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Meta {
                dev: m.dev(),
                inode: m.ino(),
                size: m.len(),
                uid: Some(m.uid()),
                gid: Some(m.gid()),
                mode: Some(m.mode() & 0o7777),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                created_ns,
            }
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Meta {
                dev: 0,
                inode: 0,
                size: m.len(),
                uid: None,
                gid: None,
                mode: None,
                mtime_ns,
                created_ns,
            }
        }
    }
}

fn h16(data: &[u8]) -> String {
    hex::encode(&Sha256::digest(data)[..HASH_LEN])
}

/// The result of hashing a file against what was seen.
struct Scan {
    /// Checkpoints (index range) whose content differs from the state.
    mismatch: Option<(u64, u64)>,
    chunks: String,
    tail: String,
    verified: u64,
}

/// Reads `file` (positioned anywhere) and hashes its checkpoints up to `size`, comparing those
/// covered by `seen` from checkpoint `from` on (earlier ones are taken from `seen` unread).
fn scan(file: &mut File, size: u64, seen: Option<&FileState>, from: u64) -> std::io::Result<Scan> {
    let mut chunks = String::new();
    if let Some(s) = seen {
        let keep = usize::try_from(from).unwrap_or(usize::MAX).saturating_mul(HASH_LEN * 2);
        chunks.push_str(s.chunks.get(..keep).unwrap_or(&s.chunks));
    }
    file.seek(SeekFrom::Start(from * CHUNK))?;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file.take(size.saturating_sub(from * CHUNK)));
    let mut buf = vec![0u8; CHUNK as usize];
    let mut mismatch: Option<(u64, u64)> = None;
    let mut verified = 0u64;
    let mut tail = String::new();
    let mut i = from;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let r = reader.read(&mut buf[n..])?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        if let Some(s) = seen {
            let mut bad = false;
            if i < s.full_chunks() {
                verified += n as u64;
                bad = n < CHUNK as usize || s.chunk(i) != Some(h16(data).as_str());
            } else if i == s.full_chunks() && !s.tail.is_empty() {
                let len = (s.size - i * CHUNK) as usize;
                verified += len.min(n) as u64;
                bad = n < len || h16(&data[..len]) != s.tail;
            }
            if bad {
                mismatch = Some(mismatch.map_or((i, i + 1), |(a, _)| (a, i + 1)));
            }
        }
        if n == CHUNK as usize {
            chunks.push_str(&h16(data));
        } else {
            tail = h16(data);
        }
        i += 1;
        if n < CHUNK as usize {
            break;
        }
    }
    Ok(Scan {
        mismatch,
        chunks,
        tail,
        verified,
    })
}

/// Whether the file at `path` starts with the content `seen` describes (a rotated copy).
fn starts_with_seen(path: &Path, seen: &FileState) -> bool {
    let Ok(mut f) = File::open(path) else { return false };
    let Ok(m) = f.metadata() else { return false };
    if !m.is_file() || m.len() < seen.size {
        return false;
    }
    scan(&mut f, seen.size, Some(seen), 0).is_ok_and(|s| s.mismatch.is_none())
}

/// A `*`/`?` wildcard match of a file name.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Files matching an absolute glob (wildcards in the file name only), resolved on the real
/// file system; sorted.
pub fn expand(glob: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(pat)) = (glob.parent(), glob.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(pat, n)))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Where rotated copies of `path` may be: beside it (`name.1`, `name-20261201`, not compressed)
/// and in `extra` globs; newest first.
pub fn rotated_candidates(path: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        out.extend(expand(&dir.join(format!("{name}.*"))));
        out.extend(expand(&dir.join(format!("{name}-*"))));
    }
    for g in extra {
        out.extend(expand(g));
    }
    out.retain(|p| {
        p.as_path() != path
            && !p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| COMPRESSED.iter().any(|s| n.ends_with(s)))
    });
    out.sort();
    out.dedup();
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    out.sort_by_key(|p| std::cmp::Reverse(mtime(p)));
    out.truncate(MAX_CANDIDATES);
    out
}

/// How thoroughly to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Re-hash every byte seen.
    Full,
    /// Re-hash only the last partial checkpoint and new bytes when the file grew.
    Incremental,
}

/// What one look found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `new`, `unchanged`, `appended`, `rotated`, `rewritten`, `truncated`, `deleted`,
    /// `replaced`, `missing` (never seen, absent).
    pub change: &'static str,
    /// The state to keep (`None`: forget the path).
    pub state: Option<FileState>,
    pub meta: Option<Meta>,
    pub old: Option<Meta>,
    pub rotation: Option<&'static str>,
    pub rotated_to: Option<PathBuf>,
    pub tamper: Option<TamperEvent>,
    pub owner_changed: bool,
    pub mode_widened: bool,
    pub verified: u64,
}

fn old_meta(s: &FileState) -> Meta {
    Meta {
        dev: s.dev,
        inode: s.inode,
        size: s.size,
        uid: s.uid,
        gid: s.gid,
        mode: s.mode,
        mtime_ns: s.mtime_ns,
        created_ns: s.created_ns,
    }
}

/// A stable id for a tamper event on `path`.
fn tamper_id(path: &str, kind: &str, at: DateTime<Utc>) -> String {
    let mut h = Sha256::new();
    h.update(path.as_bytes());
    h.update([0]);
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(at.to_rfc3339().as_bytes());
    format!("tamper-{}", &hex::encode(h.finalize())[..16])
}

/// The hashes and metadata of `file` as it is now, compared with `seen` from checkpoint `from`.
fn baseline(
    file: &mut File,
    meta: Meta,
    seen: Option<&FileState>,
    from: u64,
    now: DateTime<Utc>,
) -> std::io::Result<(FileState, Scan)> {
    let s = scan(file, meta.size, seen, from)?;
    let state = FileState {
        dev: meta.dev,
        inode: meta.inode,
        size: meta.size,
        uid: meta.uid,
        gid: meta.gid,
        mode: meta.mode,
        mtime_ns: meta.mtime_ns,
        created_ns: meta.created_ns,
        chunks: s.chunks.clone(),
        tail: s.tail.clone(),
        verified_at: now,
        last_tamper: seen.and_then(|s| s.last_tamper.clone()),
    };
    Ok((state, s))
}

/// Looks at `path` (a real path) given what was seen, at time `now`. `host_path` names it in
/// tamper ids. `Err` when the file exists but cannot be read.
pub fn look(
    path: &Path,
    host_path: &str,
    seen: Option<&FileState>,
    depth: Depth,
    rotated: &[PathBuf],
    now: DateTime<Utc>,
) -> Result<Outcome, String> {
    let opened = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot open {host_path}: {e}")),
    };
    let read_err = |e: std::io::Error| format!("cannot read {host_path}: {e}");
    let mut out = Outcome {
        change: "unchanged",
        state: None,
        meta: None,
        old: seen.map(old_meta),
        rotation: None,
        rotated_to: None,
        tamper: None,
        owner_changed: false,
        mode_widened: false,
        verified: 0,
    };
    let event = |kind: &str, range: Option<(u64, u64)>, old: &FileState, new: Option<Meta>| TamperEvent {
        id: tamper_id(host_path, kind, now),
        kind: kind.to_string(),
        detected_at: now,
        range_start: range.map(|r| r.0),
        range_end: range.map(|r| r.1),
        old_size_bytes: Some(old.size),
        new_size_bytes: new.map(|m| m.size),
        old_inode: Some(old.inode),
        new_inode: new.map(|m| m.inode),
    };
    // Where the content seen went, if it was rotated away. When the file at the path is gone or
    // another one, only the old inode itself under a rotated name counts (a rename): a copy
    // would let anyone copy the log aside and put an edited one in its place. When the file was
    // truncated in place, a rotated copy that starts with the content seen counts
    // (copytruncate).
    let renamed = |old: &FileState| -> Option<PathBuf> {
        rotated_candidates(path, rotated).into_iter().find(|c| {
            std::fs::metadata(c).is_ok_and(|m| {
                let m = Meta::of(&m);
                m.inode == old.inode && m.dev == old.dev && old.inode != 0 && m.created_ns == old.created_ns
            }) && starts_with_seen(c, old)
        })
    };
    let copied = |old: &FileState| -> Option<PathBuf> {
        rotated_candidates(path, rotated)
            .into_iter()
            .find(|c| starts_with_seen(c, old))
    };

    let Some(mut file) = opened else {
        out.change = "missing";
        let already = seen.is_some_and(|old| {
            old.last_tamper
                .as_ref()
                .is_some_and(|t| t.kind == "deleted" && t.old_inode == Some(old.inode))
        });
        if let (Some(old), true) = (seen, already) {
            // The deletion was reported at an earlier look.
            out.state = Some(old.clone());
        } else if let Some(old) = seen {
            if let Some(to) = renamed(old) {
                out.change = "rotated";
                out.rotation = Some("rename");
                out.rotated_to = Some(to);
            } else {
                out.change = "deleted";
                let t = event("deleted", None, old, None);
                let mut kept = old.clone();
                kept.last_tamper = Some(t.clone());
                out.tamper = Some(t);
                // Keep the state: a file recreated later is then a replacement, not a new log.
                out.state = Some(kept);
            }
        }
        return Ok(out);
    };
    let m = file.metadata().map_err(read_err)?;
    if !m.is_file() {
        return Err(format!("{host_path} is not a regular file"));
    }
    let meta = Meta::of(&m);
    out.meta = Some(meta);
    let Some(old) = seen else {
        let (state, s) = baseline(&mut file, meta, None, 0, now).map_err(read_err)?;
        out.change = "new";
        out.verified = s.verified;
        out.state = Some(state);
        return Ok(out);
    };
    // The file seen was deleted earlier (reported then); this one is a new file at the path.
    let was_deleted = old
        .last_tamper
        .as_ref()
        .is_some_and(|t| t.kind == "deleted" && t.old_inode == Some(old.inode));
    let same_file = meta.inode == old.inode
        && meta.dev == old.dev
        && (meta.created_ns.is_none() || old.created_ns.is_none() || meta.created_ns == old.created_ns);
    let (state, tamper) = if !same_file && was_deleted {
        out.change = "new";
        let (state, s) = baseline(&mut file, meta, None, 0, now).map_err(read_err)?;
        out.verified = s.verified;
        (state, None)
    } else if !same_file || meta.size < old.size {
        // Another file at the path, or this one shorter: fine only if the content seen went to
        // a rotated name.
        let (mut state, s) = baseline(&mut file, meta, None, 0, now).map_err(read_err)?;
        out.verified = s.verified;
        state.last_tamper = old.last_tamper.clone();
        let (rotation, found, kind, range) = if same_file {
            ("copytruncate", copied(old), "truncated", Some((meta.size, old.size)))
        } else {
            ("rename", renamed(old), "replaced", None)
        };
        match found {
            Some(to) => {
                out.change = "rotated";
                out.rotation = Some(rotation);
                out.rotated_to = Some(to);
                (state, None)
            }
            None => {
                out.change = kind;
                (state, Some(event(kind, range, old, Some(meta))))
            }
        }
    } else {
        let from = match depth {
            Depth::Full => 0,
            Depth::Incremental => old.full_chunks(),
        };
        let (mut state, s) = baseline(&mut file, meta, Some(old), from, now).map_err(read_err)?;
        out.verified = s.verified;
        if depth == Depth::Incremental {
            state.verified_at = old.verified_at;
        }
        match s.mismatch {
            Some((a, b)) => {
                out.change = "rewritten";
                let range = (a * CHUNK, (b * CHUNK).min(old.size));
                (state, Some(event("rewritten", Some(range), old, Some(meta))))
            }
            None => {
                out.change = if meta.size > old.size { "appended" } else { "unchanged" };
                (state, None)
            }
        }
    };
    let mut state = state;
    let mut tamper = tamper;
    if same_file {
        out.owner_changed = meta.uid != old.uid || meta.gid != old.gid;
        out.mode_widened = matches!((meta.mode, old.mode), (Some(n), Some(o)) if n & !o & 0o022 != 0);
        if tamper.is_none() && out.owner_changed {
            tamper = Some(event("owner_changed", None, old, Some(meta)));
        } else if tamper.is_none() && out.mode_widened {
            tamper = Some(event("mode_widened", None, old, Some(meta)));
        }
    }
    if let Some(t) = &tamper {
        state.last_tamper = Some(t.clone());
    }
    out.tamper = tamper;
    out.state = Some(state);
    Ok(out)
}
