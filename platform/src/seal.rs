//! Sealing bytes with a key from the environment (AES-256-GCM, a random 96-bit nonce per seal,
//! stored as `nonce ‖ ciphertext ‖ tag`): what the engine must keep or carry but nobody may read
//! without the key (the original of a blocked message for the bank's audit, message bodies on
//! Kafka, the messages for the bank's AFC system).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("must be 64 hex digits (a 32-byte AES-256 key): {0}")]
    BadKey(String),
    #[error("sealed data does not open with this key (wrong key, or altered)")]
    Open,
}

/// An AES-256 key.
#[derive(Clone)]
pub struct SealKey(Aes256Gcm);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(aes-256-gcm)")
    }
}

impl SealKey {
    /// From 64 hex digits.
    pub fn from_hex(hex_key: &str) -> Result<Self, SealError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|e| SealError::BadKey(e.to_string()))?;
        Aes256Gcm::new_from_slice(&bytes)
            .map(Self)
            .map_err(|_| SealError::BadKey(format!("{} bytes", bytes.len())))
    }

    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption fails only for inputs beyond what AES-GCM can take (64 GiB).
        let sealed = self.0.encrypt(&nonce, plain).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
        self.0
            .decrypt(&Nonce::from(nonce), data)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_with_the_key_only() -> Result<(), SealError> {
        let key = SealKey::from_hex(&"11".repeat(32))?;
        let sealed = key.seal(b"4111 1111 1111 1111");
        assert!(!sealed.windows(4).any(|w| w == b"4111"));
        assert_eq!(key.open(&sealed)?, b"4111 1111 1111 1111");
        assert_ne!(key.seal(b"x"), key.seal(b"x"), "a fresh nonce each time");
        let other = SealKey::from_hex(&"22".repeat(32))?;
        assert!(other.open(&sealed).is_err());
        let mut altered = sealed.clone();
        if let Some(b) = altered.last_mut() {
            *b ^= 1;
        }
        assert!(key.open(&altered).is_err());
        assert!(key.open(b"short").is_err());
        Ok(())
    }

    #[test]
    fn a_key_is_64_hex_digits() {
        assert!(SealKey::from_hex("abcd").is_err());
        assert!(SealKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(SealKey::from_hex(&format!(" {} ", "ab".repeat(32))).is_ok());
    }
}
