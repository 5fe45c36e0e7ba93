//! Secrets: generation of tokens and keys, their hashes, and password hashing.
//!
//! Machine secrets (enrollment tokens, agent secrets, API keys, session tokens) are 256-bit
//! random values, so a plain SHA-256 is enough to store them; people's passwords are hashed
//! with argon2id. Nothing here logs a secret.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A random secret of 32 bytes, hex-encoded, with a readable prefix (`rnd_tok_`, `rnd_key_`).
pub fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A random identifier of 16 bytes, hex-encoded.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A password a person can type: 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// SHA-256 of a machine secret, hex-encoded: what the store keeps.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `secret` matches a stored SHA-256 hash.
pub fn verify_secret(secret: &str, stored_hash: &str) -> bool {
    constant_time_eq(&hash_secret(secret), stored_hash)
}

/// Hashes a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches an argon2 PHC hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hash_verifies() {
        let a = random_secret("rnd_tok_");
        let b = random_secret("rnd_tok_");
        assert_ne!(a, b);
        assert!(a.starts_with("rnd_tok_") && a.len() == 8 + 64);
        let h = hash_secret(&a);
        assert!(verify_secret(&a, &h));
        assert!(!verify_secret(&b, &h));
        assert!(!h.contains(&a[8..]));
    }

    #[test]
    fn password_hash_roundtrip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let p = random_password();
        assert_eq!(p.len(), 20);
        assert_ne!(p, random_password());
    }
}
