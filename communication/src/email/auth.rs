//! Sender authentication of imported mail: is the domain of its `From:` proven? DKIM signatures,
//! SPF where the connecting IP is known, and DMARC (the From: domain aligned with a passing DKIM
//! `d=` or SPF domain), checked with `mail-auth`; and the policy for mail whose sender is not.
//!
//! What counts as authenticated (`pass`): DMARC passes, i.e. a valid DKIM signature or an SPF
//! pass of a domain aligned with the From: domain as its record says. A domain that publishes no
//! DMARC record passes only with a valid signature (or SPF pass) of the From: domain itself or a
//! parent of it: whoever can publish a key for a domain controls every name under it. Anything
//! else is unauthenticated and gets [`AuthPolicy`]:
//! - `fail`: the domain publishes DMARC (whatever its `p=`: the bank keys a client's identity on
//!   the address, which asks more than delivery does) and nothing aligned passed;
//! - `temperror`: DNS trouble; it never makes a mail trusted;
//! - `permerror`: broken records, a mail with From: addresses of several domains, or one the
//!   checks cannot read;
//! - `none`: the domain publishes no DMARC record and nothing aligned passed (plain unsigned
//!   mail). Accepted as its From: says unless `without_dmarc: policy` ([`WithoutDmarc`]): such a
//!   domain never asked anybody to check its mail, and most mail of small domains is like that.
//!
//! The connecting IP (for SPF): IMAP does not tell it. With `trusted_received_by` naming the
//! bank's MX, the topmost `Received:` written `by` that host gives it: the MX adds its header on
//! top, so headers above it come from later hops inside the bank and headers below it may be
//! anybody's. Without that setting (or without such a header, or when it names no routable
//! address) SPF is `none` and DMARC rests on DKIM, which survives the way to the mailbox.

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use mail_parser::{HeaderName, HeaderValue, Host, MessageParser};

/// Counter, label `result` (`pass`, `fail`, `none`, `temperror`, `permerror`): every imported
/// mail's sender authentication, whatever the policy did with it.
pub const AUTH_TOTAL: &str = "inbox_email_auth_total";
/// Appended to the display name of a sender whose mail is kept apart (`separate`).
pub const UNVERIFIED_MARK: &str = "(unverified sender)";
/// Longest wait for one mail's checks (DNS included); past it the result is `temperror`.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// What becomes of a mail whose sender is not authenticated (`email.auth.policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthPolicy {
    /// Imported as a message of its own client, `email:unverified:<address>`, whose name says
    /// "(unverified sender)": it never joins the ticket of the address's real owner.
    #[default]
    Separate,
    /// Not imported: moved to the quarantine folder (`email.imap.quarantine`).
    Quarantine,
    /// Imported as its From: says (a bank whose MX already enforces DMARC).
    Accept,
}

impl AuthPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "separate" => Some(Self::Separate),
            "quarantine" => Some(Self::Quarantine),
            "accept" => Some(Self::Accept),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Separate => "separate",
            Self::Quarantine => "quarantine",
            Self::Accept => "accept",
        }
    }
}

/// How a mail from a domain without a DMARC record, and with no aligned pass, is taken
/// (`email.auth.without_dmarc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WithoutDmarc {
    /// As its From: says: the domain asked nobody to check its mail.
    #[default]
    Accept,
    /// As unauthenticated: [`AuthPolicy`] applies (only proven senders join a client).
    Policy,
}

impl WithoutDmarc {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "accept" => Some(Self::Accept),
            "policy" => Some(Self::Policy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Policy => "policy",
        }
    }
}

/// The resolver the checks ask (`email.auth.dns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DnsServer {
    /// The system's (`/etc/resolv.conf`).
    #[default]
    System,
    /// One server, over UDP (TCP when an answer comes back truncated).
    At(SocketAddr),
}

impl DnsServer {
    /// `system`, or an IP address with an optional port (53 by default): `127.0.0.1:5353`,
    /// `[::1]:53`, `10.0.0.2`. A name would need a resolver to find the resolver.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("system") {
            return Some(Self::System);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Some(Self::At(addr));
        }
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| Self::At(SocketAddr::new(ip, 53)))
    }
}

/// `email.auth`: how imported mail is authenticated and what the unauthenticated gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    pub policy: AuthPolicy,
    pub without_dmarc: WithoutDmarc,
    /// The bank's MX as it names itself in `Received: ... by <name>` (lowercase, no final dot);
    /// `None`: the connecting IP is unknown and SPF is `none`.
    pub trusted_received_by: Option<String>,
    pub dns: DnsServer,
}

/// `s` as a host name (letters, digits, `-` and `.`, at most 253 characters), lowercased and
/// without a final dot.
pub fn host_name(s: &str) -> Option<String> {
    let name = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)).then_some(name)
}

/// The outcome of one mail's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Pass,
    Fail,
    None,
    TempError,
    PermError,
}

impl AuthResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::None => "none",
            Self::TempError => "temperror",
            Self::PermError => "permerror",
        }
    }
}

/// What the import does with a mail, given its result and the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A message of the client its From: (or thread) names, as always.
    Trusted,
    /// A message of `email:unverified:<address>`, never threaded into anyone's ticket.
    Separate,
    /// Not imported; moved to the quarantine folder.
    Quarantine,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trusted => "trusted",
            Self::Separate => "separate",
            Self::Quarantine => "quarantine",
        }
    }
}

impl AuthSettings {
    pub fn decide(&self, result: AuthResult) -> Decision {
        let unproven = match result {
            AuthResult::Pass => false,
            AuthResult::None => self.without_dmarc == WithoutDmarc::Policy,
            AuthResult::Fail | AuthResult::TempError | AuthResult::PermError => true,
        };
        match (unproven, self.policy) {
            (false, _) | (true, AuthPolicy::Accept) => Decision::Trusted,
            (true, AuthPolicy::Separate) => Decision::Separate,
            (true, AuthPolicy::Quarantine) => Decision::Quarantine,
        }
    }
}

/// DMARC's answer for the From: domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Dmarc {
    /// Neither the domain nor a parent of it publishes a record.
    #[default]
    NoRecord,
    Pass,
    Fail,
    TempError,
    PermError,
}

/// What the checks found, reduced to what the result depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    pub(crate) dmarc: Dmarc,
    /// `d=` of every valid DKIM signature, lowercased.
    pub(crate) dkim_pass: Vec<String>,
    /// The domain SPF passed for, if it did.
    pub(crate) spf_pass: Option<String>,
    /// A DKIM or SPF check met DNS trouble.
    pub(crate) temperror: bool,
}

/// `domain` is `parent` or a name under it (and `parent` is not a bare top-level label).
fn same_or_under(domain: &str, parent: &str) -> bool {
    parent.contains('.')
        && (domain == parent
            || domain
                .strip_suffix(parent)
                .is_some_and(|rest| rest.ends_with('.')))
}

/// The result for a mail whose From: addresses are `from` (lowercased) and whose identity, the
/// address its client id is made of, is `identity`.
pub(crate) fn classify(from: &[String], identity: Option<&str>, e: &Evidence) -> AuthResult {
    let domain_of = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
    let mut domains: Vec<String> = from.iter().filter_map(|a| domain_of(a)).collect();
    domains.sort();
    domains.dedup();
    let domain = match domains.as_slice() {
        // No From: address: nothing to prove, and the mail gets no one's identity anyway.
        [] => return AuthResult::None,
        [one] => one.as_str(),
        // DMARC exempts such mail; an identity taken from one of them would be unproven.
        _ => return AuthResult::PermError,
    };
    // The two parsers must agree on the address whose domain is proven.
    if identity.and_then(domain_of).as_deref() != Some(domain) {
        return AuthResult::PermError;
    }
    match e.dmarc {
        Dmarc::Pass => AuthResult::Pass,
        Dmarc::Fail => AuthResult::Fail,
        Dmarc::TempError => AuthResult::TempError,
        Dmarc::PermError => AuthResult::PermError,
        Dmarc::NoRecord => {
            let aligned = e.dkim_pass.iter().any(|d| same_or_under(domain, d))
                || e.spf_pass
                    .as_deref()
                    .is_some_and(|d| same_or_under(domain, d));
            if aligned {
                AuthResult::Pass
            } else if e.temperror {
                AuthResult::TempError
            } else {
                AuthResult::None
            }
        }
    }
}

/// The SMTP client of the bank's MX as its `Received:` header records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) ip: IpAddr,
    /// The name the client greeted with (HELO/EHLO); empty when the header has none.
    pub(crate) helo: String,
}

/// The client that handed the mail to `mx`: the topmost `Received:` written by `mx` (see the
/// module doc). `None` when there is none, or when it names no routable address (a loopback
/// re-injection, a local submission).
pub(crate) fn connecting_peer(raw: &[u8], mx: &str) -> Option<Peer> {
    // mail-parser has panicked on broken MIME (parse.rs); a header-only parse is cheap to guard.
    let parsed = std::panic::catch_unwind(|| {
        let msg = MessageParser::default().parse_headers(raw)?;
        for header in msg.headers() {
            let (HeaderName::Received, HeaderValue::Received(r)) = (&header.name, &header.value)
            else {
                continue;
            };
            let by_mx = matches!(&r.by, Some(Host::Name(n))
                if n.trim_end_matches('.').eq_ignore_ascii_case(mx));
            if !by_mx {
                continue;
            }
            let ip = r.from_ip?;
            if ip.is_loopback() || ip.is_unspecified() {
                return None;
            }
            let helo = match r.helo.as_ref().or(r.from.as_ref()) {
                Some(Host::Name(n)) => n.trim_end_matches('.').to_ascii_lowercase(),
                _ => String::new(),
            };
            return Some(Peer { ip, helo });
        }
        None
    });
    parsed.ok().flatten()
}

/// The envelope sender the final delivery recorded (the topmost `Return-Path:`), without angle
/// brackets; empty for the null sender or none. SPF binds the connecting IP to this domain, so
/// a forged value only makes SPF fail.
fn return_path(raw: &[u8]) -> String {
    std::panic::catch_unwind(|| {
        MessageParser::default()
            .parse_headers(raw)
            .and_then(|m| m.header_raw("Return-Path").map(str::to_owned))
    })
    .ok()
    .flatten()
    .map(|v| {
        v.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim()
            .to_ascii_lowercase()
    })
    .filter(|v| v.contains('@') && !v.chars().any(char::is_whitespace))
    .unwrap_or_default()
}

/// One mail's verdict, for the decision, the log and the metric (never any of the mail's text
/// but its From: domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub result: AuthResult,
    /// The From: domain checked (empty when the mail has none).
    pub domain: String,
    /// The DKIM signatures' results, e.g. `pass:bank.example fail:other.example`; `none`.
    pub dkim: String,
    /// SPF's result (`none` when the connecting IP is unknown).
    pub spf: String,
    /// The DMARC record's policy (`none`, `quarantine`, `reject`), if the domain has one.
    pub dmarc_policy: Option<String>,
}

impl Verdict {
    fn only(result: AuthResult) -> Self {
        Self {
            result,
            domain: String::new(),
            dkim: "none".into(),
            spf: "none".into(),
            dmarc_policy: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("email.auth.dns: cannot set up the resolver: {0}")]
    Resolver(String),
}

/// Checks mail against the DNS (`email.auth.dns`), caching answers for their TTL.
#[derive(Clone)]
pub struct Verifier {
    auth: MessageAuthenticator,
    trusted_received_by: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("trusted_received_by", &self.trusted_received_by)
            .finish_non_exhaustive()
    }
}

fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

impl Verifier {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthError> {
        let auth = match settings.dns {
            DnsServer::System => MessageAuthenticator::new_system_conf(),
            DnsServer::At(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                // A long answer (a 4096-bit key) is truncated over UDP and asked again over TCP.
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                MessageAuthenticator::new(
                    ResolverConfig::from_name_servers(vec![server]),
                    ResolverOpts::default(),
                )
            }
        }
        .map_err(|e| AuthError::Resolver(e.to_string()))?;
        Ok(Self {
            auth,
            trusted_received_by: settings.trusted_received_by.clone(),
        })
    }

    /// The verdict on `raw`, whose client identity would be `identity` (the parsed From:
    /// address). Never fails: a check that cannot finish is a `temperror`, one that cannot read
    /// the mail a `permerror`.
    pub async fn verify(&self, raw: &[u8], identity: Option<&str>) -> Verdict {
        let checks = AssertUnwindSafe(self.check(raw, identity)).catch_unwind();
        match tokio::time::timeout(VERIFY_TIMEOUT, checks).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(_)) => {
                tracing::warn!("email: the sender checks failed on a mail; taken as permerror");
                Verdict::only(AuthResult::PermError)
            }
            Err(_) => Verdict::only(AuthResult::TempError),
        }
    }

    async fn check(&self, raw: &[u8], identity: Option<&str>) -> Verdict {
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return Verdict::only(AuthResult::PermError);
        };
        let dkim = self.auth.verify_dkim(&message).await;
        let peer = self
            .trusted_received_by
            .as_deref()
            .and_then(|mx| Some((mx, connecting_peer(raw, mx)?)));
        let mail_from = return_path(raw);
        let spf = match &peer {
            None => SpfOutput::new(String::new()),
            Some((mx, peer)) if mail_from.is_empty() => {
                self.auth
                    .verify_spf(SpfParameters::verify_ehlo(peer.ip, &peer.helo, mx))
                    .await
            }
            Some((mx, peer)) => {
                self.auth
                    .verify_spf(SpfParameters::verify_mail_from(
                        peer.ip, &peer.helo, mx, &mail_from,
                    ))
                    .await
            }
        };
        let spf_domain = spf.domain().to_ascii_lowercase();
        let dmarc = self
            .auth
            .verify_dmarc(DmarcParameters::new(&message, &dkim, &spf_domain, &spf))
            .await;
        let evidence = Evidence {
            dmarc: match dmarc.result() {
                DmarcResult::Pass => Dmarc::Pass,
                DmarcResult::Fail(_) => Dmarc::Fail,
                DmarcResult::TempError(_) => Dmarc::TempError,
                DmarcResult::PermError(_) => Dmarc::PermError,
                DmarcResult::None => Dmarc::NoRecord,
            },
            dkim_pass: dkim
                .iter()
                .filter(|o| *o.result() == DkimResult::Pass)
                .filter_map(|o| o.signature().map(|s| s.d.to_ascii_lowercase()))
                .collect(),
            spf_pass: (spf.result() == SpfResult::Pass).then(|| spf_domain.clone()),
            temperror: spf.result() == SpfResult::TempError
                || dkim
                    .iter()
                    .any(|o| matches!(o.result(), DkimResult::TempError(_))),
        };
        let dkim_summary = if dkim.is_empty() {
            "none".to_owned()
        } else {
            dkim.iter()
                .map(|o| match o.signature() {
                    Some(s) => format!("{}:{}", dkim_word(o.result()), s.d.to_ascii_lowercase()),
                    None => dkim_word(o.result()).to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        Verdict {
            result: classify(&message.from, identity, &evidence),
            domain: dmarc.domain().to_owned(),
            dkim: dkim_summary,
            spf: spf_word(spf.result()).to_owned(),
            dmarc_policy: dmarc
                .dmarc_record()
                .map(|_| dmarc.policy().to_string().to_ascii_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(policy: AuthPolicy, without_dmarc: WithoutDmarc) -> AuthSettings {
        AuthSettings {
            policy,
            without_dmarc,
            ..AuthSettings::default()
        }
    }

    #[test]
    fn only_unauthenticated_mail_gets_the_policy_and_no_dmarc_record_is_a_choice() {
        use AuthResult::*;
        use Decision::*;
        let default = AuthSettings::default();
        assert_eq!(
            (default.policy, default.without_dmarc, default.dns),
            (
                AuthPolicy::Separate,
                WithoutDmarc::Accept,
                DnsServer::System
            )
        );
        for (policy, unproven) in [
            (AuthPolicy::Separate, Separate),
            (AuthPolicy::Quarantine, Quarantine),
            (AuthPolicy::Accept, Trusted),
        ] {
            for without in [WithoutDmarc::Accept, WithoutDmarc::Policy] {
                let s = settings(policy, without);
                assert_eq!(s.decide(Pass), Trusted, "{policy:?}");
                for r in [Fail, TempError, PermError] {
                    assert_eq!(s.decide(r), unproven, "{policy:?} {r:?}");
                }
                let none = if without == WithoutDmarc::Policy {
                    unproven
                } else {
                    Trusted
                };
                assert_eq!(s.decide(None), none, "{policy:?} {without:?}");
            }
        }
    }

    fn from(a: &str) -> Vec<String> {
        vec![a.to_owned()]
    }

    #[test]
    fn dmarc_decides_where_the_domain_publishes_a_record() {
        let mut e = Evidence {
            dmarc: Dmarc::Fail,
            // A valid signature of another domain proves nothing about this one.
            dkim_pass: vec!["evil.example".into()],
            ..Evidence::default()
        };
        let ivan = "ivan@client.example";
        assert_eq!(classify(&from(ivan), Some(ivan), &e), AuthResult::Fail);
        e.dmarc = Dmarc::Pass;
        assert_eq!(classify(&from(ivan), Some(ivan), &e), AuthResult::Pass);
        e.dmarc = Dmarc::TempError;
        assert_eq!(classify(&from(ivan), Some(ivan), &e), AuthResult::TempError);
        e.dmarc = Dmarc::PermError;
        assert_eq!(classify(&from(ivan), Some(ivan), &e), AuthResult::PermError);
    }

    #[test]
    fn without_a_record_only_a_signature_of_the_domain_or_a_parent_passes() {
        let ivan = "ivan@mail.client.example";
        let pass = |dkim: &[&str], spf: Option<&str>, temperror: bool| {
            let e = Evidence {
                dmarc: Dmarc::NoRecord,
                dkim_pass: dkim.iter().map(|d| (*d).to_owned()).collect(),
                spf_pass: spf.map(str::to_owned),
                temperror,
            };
            classify(&from(ivan), Some(ivan), &e)
        };
        assert_eq!(pass(&[], None, false), AuthResult::None);
        assert_eq!(
            pass(&["mail.client.example"], None, false),
            AuthResult::Pass
        );
        assert_eq!(pass(&["client.example"], None, false), AuthResult::Pass);
        assert_eq!(pass(&[], Some("client.example"), false), AuthResult::Pass);
        // Not a parent: a lookalike suffix, a sibling, a child, a bare top-level label.
        for d in [
            "nt.example",
            "other.client.example",
            "x.mail.client.example",
            "example",
        ] {
            assert_eq!(pass(&[d], None, false), AuthResult::None, "{d}");
        }
        assert_eq!(pass(&["evil.example"], None, true), AuthResult::TempError);
    }

    #[test]
    fn several_from_domains_or_parsers_that_disagree_are_a_permerror() {
        let e = Evidence {
            dmarc: Dmarc::Pass,
            ..Evidence::default()
        };
        let two = vec!["a@one.example".to_owned(), "b@two.example".to_owned()];
        assert_eq!(
            classify(&two, Some("a@one.example"), &e),
            AuthResult::PermError
        );
        let same = vec!["a@one.example".to_owned(), "b@ONE.example".to_owned()];
        assert_eq!(classify(&same, Some("a@one.example"), &e), AuthResult::Pass);
        assert_eq!(
            classify(&from("a@one.example"), Some("a@two.example"), &e),
            AuthResult::PermError
        );
        assert_eq!(
            classify(&from("a@one.example"), None, &e),
            AuthResult::PermError
        );
        assert_eq!(classify(&[], None, &e), AuthResult::None);
    }

    #[test]
    fn the_connecting_ip_comes_from_the_topmost_header_of_the_trusted_mx_only() {
        let mail = |received: &str| {
            format!("{received}From: a@client.example\r\nSubject: s\r\n\r\nbody\r\n").into_bytes()
        };
        let forged = "Received: from good.example (good.example [192.0.2.9])\r\n\
                      \tby MX.bank.example with ESMTP id forged; Mon, 3 Jun 2024 10:00:00 +0000\r\n";
        let inner = "Received: from mx.bank.example (mx.bank.example [10.0.0.5])\r\n\
                     \tby store.bank.example with LMTP; Mon, 3 Jun 2024 10:00:02 +0000\r\n";
        let real = "Received: from mail.evil.example (mail.evil.example [203.0.113.7])\r\n\
                    \tby mx.bank.example. with ESMTPS id real; Mon, 3 Jun 2024 10:00:01 +0000\r\n";
        // The MX's own header is above anything the sender wrote; later hops may be above it.
        let raw = mail(&format!("{inner}{real}{forged}"));
        assert_eq!(
            connecting_peer(&raw, "mx.bank.example"),
            Some(Peer {
                ip: "203.0.113.7".parse().expect("an IP"),
                helo: "mail.evil.example".into(),
            })
        );
        // Another name, or no header of the MX: unknown.
        assert_eq!(connecting_peer(&raw, "mx2.bank.example"), None);
        assert_eq!(connecting_peer(&mail(inner), "mx.bank.example"), None);
        // A loopback hop on the MX is no Internet client, and the headers below it are not
        // looked at.
        let local = "Received: from localhost (localhost [127.0.0.1])\r\n\
                     \tby mx.bank.example with ESMTP; Mon, 3 Jun 2024 10:00:01 +0000\r\n";
        assert_eq!(
            connecting_peer(&mail(&format!("{local}{forged}")), "mx.bank.example"),
            None
        );
    }

    #[test]
    fn the_return_path_is_the_envelope_sender() {
        let raw = |rp: &str| format!("{rp}From: a@b.example\r\n\r\nx\r\n").into_bytes();
        assert_eq!(
            return_path(&raw("Return-Path: <Bounce@Lists.Example>\r\n")),
            "bounce@lists.example"
        );
        assert_eq!(return_path(&raw("Return-Path: <>\r\n")), "");
        assert_eq!(return_path(&raw("")), "");
    }

    #[test]
    fn settings_values_parse() {
        assert_eq!(
            AuthPolicy::parse(" Quarantine "),
            Some(AuthPolicy::Quarantine)
        );
        assert_eq!(AuthPolicy::parse("reject"), None);
        assert_eq!(WithoutDmarc::parse("policy"), Some(WithoutDmarc::Policy));
        assert_eq!(DnsServer::parse("System"), Some(DnsServer::System));
        assert_eq!(
            DnsServer::parse("127.0.0.1:5353"),
            Some(DnsServer::At("127.0.0.1:5353".parse().expect("addr")))
        );
        assert_eq!(
            DnsServer::parse("::1"),
            Some(DnsServer::At("[::1]:53".parse().expect("addr")))
        );
        assert_eq!(DnsServer::parse("dns.example:53"), None);
        assert_eq!(
            host_name("MX.Bank.example."),
            Some("mx.bank.example".into())
        );
        for bad in ["", "mx bank", "mx..bank", "-mx.bank", "mx_1.bank"] {
            assert_eq!(host_name(bad), None, "{bad:?}");
        }
    }
}
