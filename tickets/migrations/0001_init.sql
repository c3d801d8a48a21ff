-- Never edit an applied migration (sqlx checks hashes): add a new file instead.

CREATE TABLE clients (
    id           text PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Readiness and load live here: the source of truth for assignment, surviving any restart.
CREATE TABLE managers (
    id           text PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    capacity     int  NOT NULL CHECK (capacity > 0),
    -- "I can take one more client" tokens, consumed by assignments.
    ready_slots  int  NOT NULL DEFAULT 0 CHECK (ready_slots >= 0),
    ready_since  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tickets (
    id            uuid PRIMARY KEY,
    client_id     text NOT NULL REFERENCES clients (id),
    status        text NOT NULL CHECK (status IN ('open', 'waiting', 'assigned', 'closed')),
    manager_id    text REFERENCES managers (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    waiting_since timestamptz,
    assigned_at   timestamptz,
    closed_at     timestamptz,
    close_reason  text,
    CHECK (status <> 'assigned' OR manager_id IS NOT NULL)
);
-- Rule 3: a client has at most one open ticket.
CREATE UNIQUE INDEX tickets_one_open_per_client ON tickets (client_id) WHERE status <> 'closed';
CREATE INDEX tickets_waiting ON tickets (waiting_since) WHERE status = 'waiting';
CREATE INDEX tickets_by_manager ON tickets (manager_id) WHERE status = 'assigned';

CREATE TABLE messages (
    id          uuid PRIMARY KEY,
    client_id   text NOT NULL REFERENCES clients (id),
    ticket_id   uuid REFERENCES tickets (id),
    author      text NOT NULL CHECK (author IN ('client', 'manager', 'system')),
    manager_id  text,
    channel     text NOT NULL,
    external_id text NOT NULL,
    body        text NOT NULL,
    -- Rule 1: a client message is 'pending' until the AFC verdict; only 'passed' reaches a manager.
    afc_status  text NOT NULL CHECK (afc_status IN ('pending', 'passed', 'blocked', 'not_checked')),
    afc_rule    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Every retry of the same inbound message, reply or service message maps onto this key.
    CONSTRAINT messages_channel_external_id UNIQUE (channel, external_id)
);
CREATE INDEX messages_by_ticket ON messages (ticket_id, created_at, id);
CREATE INDEX messages_by_client ON messages (client_id, created_at, id);

-- The outbox: every state change writes its events in the same transaction.
-- Events are inserted under an advisory lock held to commit, so `seq` order is commit order and a
-- reader that saw seq N never later finds a smaller one appear.
CREATE TABLE events (
    seq            bigserial PRIMARY KEY,
    dedup_key      text NOT NULL UNIQUE,
    kind           text NOT NULL,
    ticket_id      uuid,
    client_id      text NOT NULL,
    client_visible boolean NOT NULL,
    manager_id     text,
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);
CREATE INDEX events_unpublished ON events (seq) WHERE published_at IS NULL;
CREATE INDEX events_by_client ON events (client_id, seq) WHERE client_visible;
CREATE INDEX events_by_manager ON events (manager_id, seq) WHERE manager_id IS NOT NULL;
