//! The wire protocol of the bank's external AFC system, shared by the workflow service and the AFC
//! emulator:
//! - out, topic `afc.msgs`, key = chat (client) id: AES-256-GCM of the JSON
//!   `{"id", "chatId", "body", "fromClient", "attachments"?: [{"name", "contentType", "size",
//!   "sha256"}]}` laid out as `nonce(12) || ciphertext+tag`; in clear
//!   when no key is configured (dev only);
//! - in, topic `afc.verdicts`: a JWT signed RS256 by the AFC system with the claims
//!   `{"chatId", "messageId", "status": "ok" | "suspicious"}`; refused verdicts go to
//!   `afc.verdicts.dlq` with the reason.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use platform::seal::SealKey;
use serde::{Deserialize, Serialize};
use tickets::external_afc::AfcStatus;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AfcError {
    #[error("INBOX_AFC_KEY must be 64 hex digits (a 32-byte AES-256 key): {0}")]
    BadKey(String),
    #[error("cannot decrypt an AFC message (wrong key or corrupt record)")]
    Decrypt,
    #[error("AFC message JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("AFC public key: {0}")]
    PublicKey(String),
    #[error("AFC signing key: {0}")]
    SigningKey(String),
    #[error("AFC keys in {dir}: {reason}")]
    KeyFile { dir: String, reason: String },
}

/// Topic names, each under the deployment's topic prefix; the names themselves are configurable
/// because the bank's AFC system owns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfcTopics {
    pub msgs: String,
    pub verdicts: String,
    pub dlq: String,
}

impl AfcTopics {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            msgs: format!("{prefix}afc.msgs"),
            verdicts: format!("{prefix}afc.verdicts"),
            dlq: format!("{prefix}afc.verdicts.dlq"),
        }
    }

    /// The names from the settings (`INBOX_AFC_*_TOPIC`), after `prefix`.
    pub fn from_env(env: &platform::settings::Env, prefix: &str) -> Self {
        use crate::settings::{AFC_DLQ_TOPIC, AFC_MSGS_TOPIC, AFC_VERDICTS_TOPIC};
        Self {
            msgs: format!("{prefix}{}", env.text(&AFC_MSGS_TOPIC)),
            verdicts: format!("{prefix}{}", env.text(&AFC_VERDICTS_TOPIC)),
            dlq: format!("{prefix}{}", env.text(&AFC_DLQ_TOPIC)),
        }
    }

    pub fn all(&self) -> [&str; 3] {
        [&self.msgs, &self.verdicts, &self.dlq]
    }
}

/// One message as the AFC system receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfcMessage {
    pub id: Uuid,
    #[serde(rename = "chatId")]
    pub chat_id: String,
    pub body: String,
    #[serde(rename = "fromClient")]
    pub from_client: bool,
    /// The message's files by name, type, size and SHA-256 (absent when it has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AfcAttachment>,
}

/// A file of a message as the AFC system receives it: never its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfcAttachment {
    pub name: String,
    #[serde(rename = "contentType")]
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

impl From<&tickets::external_afc::AfcFile> for AfcAttachment {
    fn from(f: &tickets::external_afc::AfcFile) -> Self {
        Self {
            name: f.name.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
        }
    }
}

/// AES-256-GCM sealing of AFC messages, or clear JSON when no key is configured.
#[derive(Clone, Debug)]
pub struct Cipher(Option<SealKey>);

impl Cipher {
    /// From a hex key (64 digits); `None` or empty = clear.
    pub fn from_hex(hex_key: Option<&str>) -> Result<Self, AfcError> {
        let Some(h) = hex_key.map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(Self(None));
        };
        SealKey::from_hex(h)
            .map(|k| Self(Some(k)))
            .map_err(|e| AfcError::BadKey(e.to_string()))
    }

    /// `INBOX_AFC_KEY`.
    pub fn from_env(env: &platform::settings::Env) -> Result<Self, AfcError> {
        use platform::settings::ExposeSecret;
        let key = env.secret(&crate::settings::AFC_KEY);
        Self::from_hex(key.as_ref().map(ExposeSecret::expose_secret))
    }

    pub fn is_clear(&self) -> bool {
        self.0.is_none()
    }

    /// The record value for `m`.
    pub fn seal(&self, m: &AfcMessage) -> Result<Vec<u8>, AfcError> {
        let json = serde_json::to_vec(m)?;
        Ok(match &self.0 {
            None => json,
            Some(key) => key.seal(&json),
        })
    }

    /// The message in a record value.
    pub fn open(&self, value: &[u8]) -> Result<AfcMessage, AfcError> {
        let json = match &self.0 {
            None => value.to_vec(),
            Some(key) => key.open(value).map_err(|_| AfcError::Decrypt)?,
        };
        Ok(serde_json::from_slice(&json)?)
    }
}

/// The claims of a verdict token, as the AFC system writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictClaims {
    #[serde(rename = "chatId")]
    pub chat_id: String,
    #[serde(rename = "messageId")]
    pub message_id: String,
    pub status: String,
}

/// A verdict whose signature and claims checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedVerdict {
    pub chat_id: String,
    pub message_id: Uuid,
    pub status: AfcStatus,
}

/// Why a verdict record is dead-lettered (the text is the DLQ reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("not a JWT: {0}")]
    BadToken(String),
    #[error("bad JSON in the claims: {0}")]
    BadJson(String),
    #[error("bad message id {0:?}")]
    BadMessageId(String),
    #[error("bad status {0:?}: expected ok or suspicious")]
    BadStatus(String),
    #[error("unknown message {0}")]
    UnknownMessage(Uuid),
    #[error("chat id {claimed:?} does not own message {message_id}")]
    WrongChat { claimed: String, message_id: Uuid },
    #[error("verdict {new} contradicts the earlier verdict {earlier} for message {message_id}")]
    Contradicts {
        message_id: Uuid,
        earlier: &'static str,
        new: &'static str,
    },
}

/// The AFC system's public key: checks verdict signatures (RS256 only).
#[derive(Clone)]
pub struct VerdictKey(DecodingKey);

impl VerdictKey {
    pub fn from_pem(pem: &[u8]) -> Result<Self, AfcError> {
        DecodingKey::from_rsa_pem(pem)
            .map(Self)
            .map_err(|e| AfcError::PublicKey(e.to_string()))
    }

    /// A PEM given inline (`-----BEGIN ...`) or a path to one.
    pub fn from_setting(value: &str) -> Result<Self, AfcError> {
        if value.trim_start().starts_with("-----BEGIN") {
            return Self::from_pem(value.as_bytes());
        }
        let pem = std::fs::read(value)
            .map_err(|e| AfcError::PublicKey(format!("reading {value}: {e}")))?;
        Self::from_pem(&pem)
    }

    pub fn verify(&self, token: &[u8]) -> Result<VerifiedVerdict, Rejection> {
        use jsonwebtoken::errors::ErrorKind;
        let token = std::str::from_utf8(token)
            .map_err(|e| Rejection::BadToken(e.to_string()))?
            .trim();
        let mut v = Validation::new(Algorithm::RS256);
        // Verdicts carry no expiry or audience: they are final facts about one message.
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.0, &v).map_err(|e| {
            match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    Rejection::BadSignature(e.to_string())
                }
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => Rejection::BadJson(e.to_string()),
                _ => Rejection::BadToken(e.to_string()),
            }
        })?;
        let claims: VerdictClaims =
            serde_json::from_value(data.claims).map_err(|e| Rejection::BadJson(e.to_string()))?;
        let message_id = Uuid::parse_str(&claims.message_id)
            .map_err(|_| Rejection::BadMessageId(claims.message_id.clone()))?;
        let status =
            AfcStatus::parse(&claims.status).ok_or(Rejection::BadStatus(claims.status.clone()))?;
        Ok(VerifiedVerdict {
            chat_id: claims.chat_id,
            message_id,
            status,
        })
    }
}

/// Signs a verdict as the AFC system does (the emulator, tests).
pub fn sign_verdict(key: &EncodingKey, claims: &VerdictClaims) -> Result<String, AfcError> {
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, key)
        .map_err(|e| AfcError::SigningKey(e.to_string()))
}

/// A fresh RSA-2048 key pair as (PKCS#8 private PEM, SPKI public PEM).
pub fn generate_key_pair() -> Result<(String, String), AfcError> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| AfcError::SigningKey(e.to_string()))?;
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| AfcError::SigningKey(e.to_string()))?
        .to_string();
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| AfcError::SigningKey(e.to_string()))?;
    Ok((private_pem, public_pem))
}

/// File names of the emulator's key pair in its key directory.
pub const PRIVATE_KEY_FILE: &str = "afc-signing.key.pem";
pub const PUBLIC_KEY_FILE: &str = "afc-signing.pub.pem";

/// The key pair in `dir`, generated on first use (dev only: a real AFC system keeps its private
/// key to itself). Returns the signing key and the path of the public PEM.
pub fn dev_key_pair(dir: &Path) -> Result<(EncodingKey, PathBuf), AfcError> {
    let file_err = |reason: String| AfcError::KeyFile {
        dir: dir.display().to_string(),
        reason,
    };
    let private_path = dir.join(PRIVATE_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);
    if !private_path.exists() || !public_path.exists() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(e.to_string()))?;
        let (private_pem, public_pem) = generate_key_pair()?;
        write_private(&private_path, private_pem.as_bytes())
            .map_err(|e| file_err(e.to_string()))?;
        std::fs::write(&public_path, public_pem).map_err(|e| file_err(e.to_string()))?;
        tracing::info!(dir = %dir.display(), "generated a dev AFC signing key pair");
    }
    let pem = std::fs::read(&private_path).map_err(|e| file_err(e.to_string()))?;
    let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| AfcError::SigningKey(e.to_string()))?;
    Ok((key, public_path))
}

/// File name of the dev AES-256 key (hex) in the key directory.
pub const AES_KEY_FILE: &str = "afc-aes.hex";

/// The dev AES-256 key (64 hex digits) in `dir`, generated on first use. Both sides of the
/// protocol read it from `INBOX_AFC_KEY`; `make run` exports it from this file.
pub fn dev_aes_key(dir: &Path) -> Result<String, AfcError> {
    let file_err = |reason: String| AfcError::KeyFile {
        dir: dir.display().to_string(),
        reason,
    };
    let path = dir.join(AES_KEY_FILE);
    if !path.exists() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(e.to_string()))?;
        let mut key = [0u8; 32];
        rsa::rand_core::RngCore::fill_bytes(&mut rsa::rand_core::OsRng, &mut key);
        write_private(&path, hex::encode(key).as_bytes()).map_err(|e| file_err(e.to_string()))?;
    }
    let key = std::fs::read_to_string(&path).map_err(|e| file_err(e.to_string()))?;
    Cipher::from_hex(Some(&key))?;
    Ok(key.trim().to_owned())
}

fn write_private(path: &Path, pem: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Written to a temporary name then renamed, so a reader never sees half a key.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(pem)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_its_files_by_hash_only_when_it_has_some() -> Result<(), serde_json::Error> {
        let plain = serde_json::to_value(msg())?;
        assert!(plain.get("attachments").is_none(), "{plain}");
        let mut m = msg();
        m.attachments.push(AfcAttachment {
            name: "receipt.png".into(),
            content_type: "image/png".into(),
            size: 68,
            sha256: "ab".repeat(32),
        });
        let v = serde_json::to_value(&m)?;
        assert_eq!(v["attachments"][0]["contentType"], "image/png");
        assert_eq!(
            v["attachments"][0]["sha256"].as_str().map(str::len),
            Some(64)
        );
        assert_eq!(serde_json::from_value::<AfcMessage>(v)?, m);
        Ok(())
    }

    fn msg() -> AfcMessage {
        AfcMessage {
            id: Uuid::new_v4(),
            chat_id: "client-1".into(),
            body: "hello".into(),
            from_client: true,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn sealed_messages_open_with_the_same_key_only() -> Result<(), AfcError> {
        let key = "11".repeat(32);
        let cipher = Cipher::from_hex(Some(&key))?;
        let m = msg();
        let sealed = cipher.seal(&m)?;
        assert!(
            !sealed.windows(5).any(|w| w == b"hello"),
            "body is not in clear"
        );
        assert_eq!(sealed.len(), 12 + serde_json::to_vec(&m)?.len() + 16);
        assert_eq!(cipher.open(&sealed)?, m);
        let other = Cipher::from_hex(Some(&"22".repeat(32)))?;
        assert!(matches!(other.open(&sealed), Err(AfcError::Decrypt)));
        Ok(())
    }

    #[test]
    fn without_a_key_messages_are_clear_json_with_the_protocol_names() -> Result<(), AfcError> {
        let clear = Cipher::from_hex(None)?;
        let v: serde_json::Value = serde_json::from_slice(&clear.seal(&msg())?)?;
        assert_eq!(v["chatId"], "client-1");
        assert_eq!(v["fromClient"], true);
        assert!(Cipher::from_hex(Some("abcd")).is_err());
        Ok(())
    }

    #[test]
    fn verdicts_verify_with_the_signers_key_and_not_with_another() -> Result<(), AfcError> {
        let (private, public) = generate_key_pair()?;
        let (other_private, _) = generate_key_pair()?;
        let key = VerdictKey::from_setting(&public)?;
        let id = Uuid::new_v4();
        let claims = |status: &str| VerdictClaims {
            chat_id: "c".into(),
            message_id: id.to_string(),
            status: status.into(),
        };
        let signer = EncodingKey::from_rsa_pem(private.as_bytes())
            .map_err(|e| AfcError::SigningKey(e.to_string()))?;
        let ok = sign_verdict(&signer, &claims("ok"))?;
        assert_eq!(
            key.verify(ok.as_bytes()).map(|v| v.status),
            Ok(AfcStatus::Ok)
        );

        let forger = EncodingKey::from_rsa_pem(other_private.as_bytes())
            .map_err(|e| AfcError::SigningKey(e.to_string()))?;
        let forged = sign_verdict(&forger, &claims("ok"))?;
        assert!(matches!(
            key.verify(forged.as_bytes()),
            Err(Rejection::BadSignature(_))
        ));
        let maybe = sign_verdict(&signer, &claims("maybe"))?;
        assert_eq!(
            key.verify(maybe.as_bytes()),
            Err(Rejection::BadStatus("maybe".into()))
        );
        assert!(matches!(
            key.verify(b"not a token"),
            Err(Rejection::BadToken(_))
        ));
        Ok(())
    }
}
