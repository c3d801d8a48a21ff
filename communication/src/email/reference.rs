//! Unforgeable ticket references in mail.
//!
//! A subject reference `[#<ticket prefix>-<tag>]` threads a mail into a ticket whatever address
//! it came from, so it must not be guessable: the tag is an HMAC-SHA256 of the full ticket id
//! under a secret only the engine knows (`INBOX_EMAIL_REF_SECRET`), truncated to 32 bits. A
//! reference without a tag, or with a wrong one, is ignored (the mail becomes its sender's own).
//! Outbound Message-IDs carry a longer tag of their own, so they cannot be guessed either (a reply
//! naming one in In-Reply-To joins that thread).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Hex digits of a subject tag (32 bits: an attacker needs ~2^31 mails per ticket on average).
pub const SUBJECT_TAG_HEX: usize = 8;
/// Hex digits of a Message-ID tag (64 bits).
const MESSAGE_ID_TAG_HEX: usize = 16;
/// Shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// The key behind every reference tag.
#[derive(Clone)]
pub struct RefKey(std::sync::Arc<[u8]>);

impl std::fmt::Debug for RefKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefKey(<not shown>)")
    }
}

impl RefKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.into())
    }

    /// The MAC of `parts` under a purpose label, so a subject tag is never valid as a Message-ID
    /// tag or the other way round.
    fn mac(&self, purpose: &str, parts: &[&[u8]]) -> HmacSha256 {
        // An HMAC key may have any length: new_from_slice cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(purpose.as_bytes());
        for p in parts {
            mac.update(&[0]);
            mac.update(p);
        }
        mac
    }

    fn subject_mac(&self, ticket_id: Uuid) -> HmacSha256 {
        self.mac("inbox subject ref v1", &[ticket_id.as_bytes()])
    }

    /// The subject reference of a ticket, without brackets: `1a2b3c4d-9f8e7d6c`.
    pub fn subject_ref(&self, ticket_id: Uuid) -> String {
        let tag = hex::encode(self.subject_mac(ticket_id).finalize().into_bytes());
        format!(
            "{}-{}",
            super::short_ticket_ref(ticket_id),
            &tag[..SUBJECT_TAG_HEX]
        )
    }

    /// Whether `tag` (hex) is the subject tag of `ticket_id`; constant time.
    pub fn verify_subject_tag(&self, ticket_id: Uuid, tag: &str) -> bool {
        if tag.len() != SUBJECT_TAG_HEX {
            return false;
        }
        match hex::decode(tag.to_ascii_lowercase()) {
            Ok(bytes) => self
                .subject_mac(ticket_id)
                .verify_truncated_left(&bytes)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The tag in the Message-ID of the mail carrying event `seq` of `ticket_id`.
    pub fn message_id_tag(&self, ticket_id: Option<Uuid>, seq: i64) -> String {
        let ticket = ticket_id.map(|t| *t.as_bytes()).unwrap_or_default();
        let tag = hex::encode(
            self.mac("inbox message-id v1", &[&ticket, &seq.to_be_bytes()])
                .finalize()
                .into_bytes(),
        );
        tag[..MESSAGE_ID_TAG_HEX].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_tag_verifies_only_for_its_ticket_and_key() {
        let key = RefKey::new(b"0123456789abcdef-test");
        let ticket = Uuid::new_v4();
        let r = key.subject_ref(ticket);
        let (short, tag) = r.split_once('-').expect("prefix-tag");
        assert_eq!(short, super::super::short_ticket_ref(ticket));
        assert!(key.verify_subject_tag(ticket, tag));
        assert!(key.verify_subject_tag(ticket, &tag.to_ascii_uppercase()));
        assert!(!key.verify_subject_tag(Uuid::new_v4(), tag));
        assert!(!RefKey::new(b"another secret, 16+").verify_subject_tag(ticket, tag));
        assert!(!key.verify_subject_tag(ticket, "00000000"));
        assert!(!key.verify_subject_tag(ticket, &tag[..6]));
        assert!(!key.verify_subject_tag(ticket, "zzzzzzzz"));
    }

    #[test]
    fn message_id_tags_differ_per_event_and_are_stable() {
        let key = RefKey::new(b"0123456789abcdef-test");
        let t = Some(Uuid::new_v4());
        assert_eq!(key.message_id_tag(t, 1), key.message_id_tag(t, 1));
        assert_ne!(key.message_id_tag(t, 1), key.message_id_tag(t, 2));
        assert_eq!(key.message_id_tag(t, 1).len(), 16);
    }
}
