//! A DNS server of one test, on loopback UDP: it answers TXT questions from the records the test
//! publishes (DKIM keys at `<selector>._domainkey.<domain>`, `_dmarc.<domain>`, SPF) and NXDOMAIN
//! to everything else, so the sender checks of `communication` (`email.auth.dns`) run a real DNS
//! exchange offline. Built on the DNS library `mail-auth`'s own resolver uses (hickory-proto).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use mail_auth::hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::TXT;
use mail_auth::hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// Names (lowercase, no final dot) to their TXT records.
type Zone = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Short, so a record a test changes is asked for again soon; the tests use fresh names anyway.
const TTL: u32 = 1;

pub struct DnsServer {
    /// `127.0.0.1:<port>`: the value of `INBOX_EMAIL_AUTH_DNS`.
    pub addr: SocketAddr,
    zone: Zone,
    task: tokio::task::JoinHandle<()>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The answer to one query message (`None`: not a query worth an answer).
fn answer(zone: &Zone, packet: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.edns = request.edns.clone();
    let records = zone.lock().unwrap_or_else(PoisonError::into_inner);
    let mut code = ResponseCode::NoError;
    for query in &request.queries {
        match records.get(&key(&query.name().to_ascii())) {
            Some(txts) if query.query_type() == RecordType::TXT => {
                for txt in txts {
                    // A character-string holds at most 255 bytes; a long record is several.
                    let chunks: Vec<&[u8]> = txt.as_bytes().chunks(255).collect();
                    response.add_answer(Record::from_rdata(
                        query.name().clone(),
                        TTL,
                        RData::TXT(TXT::from_bytes(chunks)),
                    ));
                }
            }
            // The name exists, with no record of that type.
            Some(_) => {}
            None => code = ResponseCode::NXDomain,
        }
    }
    drop(records);
    response.metadata.response_code = code;
    response.queries = request.queries;
    response.to_vec().ok()
}

impl DnsServer {
    pub async fn start() -> anyhow::Result<Self> {
        // The test holds the socket from the bind on: no other process can take the port.
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .context("binding the test DNS server")?;
        let addr = socket.local_addr()?;
        let zone: Zone = Arc::default();
        let served = zone.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                if let Some(reply) = answer(&served, &buf[..n]) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        Ok(Self { addr, zone, task })
    }

    /// Publishes a TXT record at `name` (added to any already there).
    pub fn txt(&self, name: &str, value: &str) {
        self.zone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key(name))
            .or_default()
            .push(value.to_owned());
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
