-- Which client a web identity (an identity provider's issuer and subject) is. New identities get
-- `web:<subject>` (or `web:<issuer tag>:<subject>` when another issuer's subject holds that), so
-- no web client id equals a Telegram (`tg:`) or email (`email:`) one, nor another issuer's.
-- Web clients from before this keep their ids (their open tickets' workflows are named after
-- them): each is a row with no issuer yet, bound to the first issuer that presents its subject.
CREATE TABLE web_identities (
    issuer     text,
    subject    text NOT NULL,
    client_id  text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX web_identities_of_issuer ON web_identities (issuer, subject);
CREATE UNIQUE INDEX web_identities_unbound ON web_identities (subject) WHERE issuer IS NULL;

INSERT INTO web_identities (issuer, subject, client_id)
SELECT NULL, id, id FROM clients
WHERE id NOT LIKE 'tg:%' AND id NOT LIKE 'email:%' AND id NOT LIKE 'web:%';
