//! The checks after the load (the promises of the module's doc, judged against the store).

use super::*;

impl Load {
    /// Waits for the load to be accepted and worked off, stops the streams once each has caught up
    /// with the store, and checks every invariant; returns what the streams went through.
    pub async fn finish(self, engine: &Engine) -> anyhow::Result<Report> {
        let Self {
            cfg,
            edge,
            refusals,
            stop_tx,
            mut managers,
            mut clients,
            sends,
            ..
        } = self;
        let sent = tokio::time::timeout(DEADLINE * 2, sends).await???;
        let total = sent.len();
        assert!(
            total >= cfg.clients,
            "every client sent at least one message ({total} sent)"
        );

        // Every accepted message is checked (passed or blocked) and every ticket assigned.
        let ids: Vec<Uuid> = sent
            .iter()
            .map(|(_, id, _)| Uuid::parse_str(id))
            .collect::<Result<_, _>>()?;
        let clients_n = cfg.clients as i64;
        converge(&engine.database_url, "every message checked, every ticket assigned", async |db| {
            let checked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM messages WHERE id = ANY($1) AND afc_status IN ('passed', 'blocked')",
            )
            .bind(&ids)
            .fetch_one(&mut *db)
            .await?;
            let assigned: i64 =
                sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'assigned'")
                    .fetch_one(&mut *db)
                    .await?;
            if checked == total as i64 && assigned == clients_n {
                return Ok(None);
            }
            // Where the stragglers are: not stored at all, or stored and never checked (by client).
            let stored: Vec<(String, String)> = sqlx::query_as(
                "SELECT client_id, afc_status FROM messages
                 WHERE id = ANY($1) AND afc_status NOT IN ('passed', 'blocked')",
            )
            .bind(&ids)
            .fetch_all(&mut *db)
            .await?;
            let missing = total - stored.len() - checked as usize;
            Ok(Some(format!(
                "{checked}/{total} checked, {assigned}/{clients_n} assigned; {missing} not stored, \
                 unchecked: {stored:?}"
            )))
        })
        .await?;

        // Every stream catches up with its audience's newest event in the store, then stops.
        let mut db = sqlx::PgConnection::connect(&engine.database_url).await?;
        let mut expected: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for (c, _) in &clients {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT seq, kind FROM events WHERE client_id = $1 AND client_visible AND seq IS NOT NULL
                 ORDER BY seq",
            )
            .bind(&c.id)
            .fetch_all(&mut db)
            .await?;
            expected.insert(c.id.clone(), rows);
        }
        for (m, _, _) in &managers {
            let rows: Vec<(i64, String)> =
                sqlx::query_as(
                    "SELECT seq, kind FROM events WHERE manager_id = $1 AND seq IS NOT NULL ORDER BY seq",
                )
                    .bind(m)
                    .fetch_all(&mut db)
                    .await?;
            expected.insert(m.clone(), rows);
        }
        let progress = clients
            .iter()
            .map(|(c, (p, _))| (c.id.clone(), p.clone()))
            .chain(managers.iter().map(|(m, _, (p, _))| (m.clone(), p.clone())));
        for (who, mut p) in progress {
            let newest = expected[&who].last().map_or(0, |e| e.0);
            tokio::time::timeout(DEADLINE, p.wait_for(|c| *c >= newest))
                .await
                .with_context(|| format!("{who}'s stream never reached cursor {newest}"))??;
        }
        stop_tx.send_replace(true);

        // Streams: exactly the audience's events, in order, across every reconnect.
        let mut delivered: HashMap<String, Delivered> = HashMap::new();
        for (c, (_, task)) in clients.iter_mut() {
            delivered.insert(c.id.clone(), task.await??);
        }
        for (m, _, (_, task)) in managers.iter_mut() {
            delivered.insert(m.clone(), task.await??);
        }
        for (who, want) in &expected {
            let got: Vec<(i64, String)> = delivered[who]
                .events
                .iter()
                .map(|e| (e.cursor, e.kind.clone()))
                .collect();
            assert_eq!(&got, want, "{who}: stream differs from the store");
        }
        let ws_connections_min: usize = clients
            .iter()
            .filter(|(c, _)| !c.grpc)
            .map(|(c, _)| delivered[&c.id].reconnects)
            .min()
            .unwrap_or(0);
        let grpc_connections_min: usize = clients
            .iter()
            .filter(|(c, _)| c.grpc)
            .map(|(c, _)| delivered[&c.id].reconnects)
            .chain(managers.iter().map(|(m, _, _)| delivered[m].reconnects))
            .min()
            .unwrap_or(0);

        // Each client's messages: blocked ones told to the client once; the rest passed.
        let mut blocked_told: HashMap<String, usize> = HashMap::new();
        for (c, _) in &clients {
            for e in &delivered[&c.id].events {
                if e.kind == "message_blocked" {
                    *blocked_told.entry(e.message_id.clone()).or_default() += 1;
                }
            }
        }
        let statuses: Vec<(Uuid, String, Option<Uuid>, String)> = sqlx::query_as(
            "SELECT id, afc_status, ticket_id, client_id FROM messages WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut db)
        .await?;
        assert_eq!(statuses.len(), total, "every accepted message stored once");
        let status: HashMap<Uuid, (String, Option<Uuid>, String)> = statuses
            .into_iter()
            .map(|(id, s, t, c)| (id, (s, t, c)))
            .collect();
        let mut passed_by_client: HashMap<String, HashSet<String>> = HashMap::new();
        for ((ci, id, blocked), uuid) in sent.iter().zip(&ids) {
            let (s, _, client_id) = &status[uuid];
            let c = &clients[*ci].0;
            assert_eq!(client_id, &c.id, "message {id} belongs to its sender");
            if *blocked {
                assert_eq!(s, "blocked", "message {id}");
                assert_eq!(blocked_told.get(id), Some(&1), "message {id} blocked once");
            } else {
                assert_eq!(s, "passed", "message {id}");
                assert!(!blocked_told.contains_key(id));
                passed_by_client
                    .entry(c.id.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }

        // Managers: each ticket assigned once, to one manager within capacity, and its passed
        // messages visible to that manager exactly once (ListMessages), blocked ones never.
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        let mut visible_to: HashMap<String, Vec<String>> = HashMap::new();
        for (m, token, _) in &managers {
            let assigned: Vec<&Seen> = delivered[m]
                .events
                .iter()
                .filter(|e| e.kind == "ticket_assigned")
                .collect();
            assert!(assigned.len() <= cfg.capacity, "{m} over capacity");
            for e in &assigned {
                if let Some(other) = owner.insert(e.ticket_id.clone(), m.clone()) {
                    bail!("ticket {} assigned to {other} and {m}", e.ticket_id);
                }
            }
            let mut api = ManagerServiceClient::new(edge.channel().await?);
            let tickets = api
                .list_tickets(authed(token, v1::ListTicketsRequest::default()))
                .await?
                .into_inner()
                .tickets;
            assert!(tickets.len() <= cfg.capacity, "{m} over capacity");
            let mut listed: Vec<String> = tickets.iter().map(|t| t.id.clone()).collect();
            let mut streamed: Vec<String> = assigned.iter().map(|e| e.ticket_id.clone()).collect();
            listed.sort();
            streamed.sort();
            assert_eq!(listed, streamed, "{m}: stream and ListTickets agree");
            for t in &tickets {
                let mut page_token = String::new();
                loop {
                    let page = api
                        .list_messages(authed(
                            token,
                            v1::ListMessagesRequest {
                                ticket_id: t.id.clone(),
                                page_size: 0,
                                page_token: page_token.clone(),
                                ..Default::default()
                            },
                        ))
                        .await?
                        .into_inner();
                    for msg in page.messages {
                        if msg.author == v1::Author::Client as i32 {
                            assert_eq!(msg.ticket_id, t.id);
                            visible_to
                                .entry(msg.id)
                                .or_default()
                                .push(t.client_id.clone());
                        }
                    }
                    if !page.has_more {
                        break;
                    }
                    page_token = page.next_page_token;
                }
            }
            // Live messages (after assignment) arrive once each, on this manager's own tickets.
            let mut live = HashSet::new();
            for e in delivered[m]
                .events
                .iter()
                .filter(|e| e.kind == "message_visible")
            {
                assert!(
                    live.insert(e.message_id.clone()),
                    "{m}: {} twice",
                    e.message_id
                );
                assert_eq!(owner.get(&e.ticket_id), Some(m), "{m}: foreign ticket");
            }
        }
        assert_eq!(
            owner.len(),
            cfg.clients,
            "every ticket assigned exactly once"
        );
        let mut seen_total = 0;
        for (client, passed) in &passed_by_client {
            for id in passed {
                assert_eq!(
                    visible_to.get(id).map(Vec::as_slice),
                    Some(std::slice::from_ref(client)),
                    "message {id} visible exactly once, on its client's ticket"
                );
                seen_total += 1;
            }
        }
        assert_eq!(
            visible_to.len(),
            seen_total,
            "managers see no message that was not accepted as passed"
        );

        // The store agrees: one manager per ticket, nobody over capacity, assigned once.
        let twice: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT ticket_id FROM events WHERE kind = 'ticket_assigned'
             GROUP BY ticket_id HAVING count(*) <> 1) x",
        )
        .fetch_one(&mut db)
        .await?;
        assert_eq!(twice, 0, "every ticket assigned exactly once");
        let over: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT manager_id FROM tickets WHERE status = 'assigned'
             GROUP BY manager_id HAVING count(*) > $1) x",
        )
        .bind(cfg.capacity as i64)
        .fetch_one(&mut db)
        .await?;
        assert_eq!(over, 0, "no manager over capacity");
        let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
            .fetch_one(&mut db)
            .await?;
        assert_eq!(tickets, clients_n, "one ticket per client");
        let refusals = *refusals.borrow();
        Ok(Report {
            ws_connections_min,
            grpc_connections_min,
            refusals,
        })
    }
}
