//! The OpenAPI 3.1 document of the client API, served at `GET /v1/openapi.json`. Written by hand
//! next to the routes; `tests` checks that it names exactly the routes the router serves.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

pub fn document() -> Value {
    let unauthenticated = error_response("No token, or a token that does not verify");
    let forbidden = error_response("The token lacks the client role");
    let rate_limited = json!({
        "description": "Too many requests from this client; retry after `Retry-After` seconds",
        "headers": { "Retry-After": { "schema": { "type": "integer" } } },
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    });
    let unavailable = error_response("A dependency is unavailable; retry later");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "inbox client API",
            "version": "1",
            "description": "Web chat of the bank's support: send messages, read the history of \
                            all of your tickets as one chat, track what you have read, and \
                            receive events over a WebSocket."
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/v1/messages": {
                "post": {
                    "operationId": "sendMessage",
                    "summary": "Send a message; retrying with the same client_message_id is harmless",
                    "requestBody": { "required": true, "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/SendMessage" } } } },
                    "responses": {
                        "202": json_response("Accepted (or already accepted)", "Accepted"),
                        "400": error_response("Malformed JSON"),
                        "401": unauthenticated, "403": forbidden,
                        "409": error_response("client_message_id reused with another body"),
                        "413": error_response("Request body too large"),
                        "422": error_response("Invalid field"),
                        "429": rate_limited, "503": unavailable
                    }
                },
                "get": {
                    "operationId": "history",
                    "summary": "One page of the chat across all of the client's tickets, oldest first",
                    "parameters": [
                        { "name": "before", "in": "query", "required": false,
                          "description": "next_before of the previous page",
                          "schema": { "type": "string" } },
                        { "name": "limit", "in": "query", "required": false,
                          "schema": { "type": "integer", "minimum": 1, "maximum": edge::client::MAX_PAGE, "default": edge::client::DEFAULT_PAGE } }
                    ],
                    "responses": {
                        "200": json_response("A page of the chat", "HistoryPage"),
                        "400": error_response("Malformed query"),
                        "401": unauthenticated, "403": forbidden,
                        "422": error_response("Invalid cursor or limit"),
                        "429": rate_limited, "503": unavailable
                    }
                }
            },
            "/v1/read": {
                "post": {
                    "operationId": "markRead",
                    "summary": "Mark the chat read up to a message (the cursor never moves back)",
                    "requestBody": { "required": true, "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/MarkRead" } } } },
                    "responses": {
                        "200": json_response("The read state after the call", "ReadState"),
                        "400": error_response("Malformed JSON"),
                        "401": unauthenticated, "403": forbidden,
                        "404": error_response("No such message in the client's chat"),
                        "422": error_response("Invalid field"),
                        "429": rate_limited, "503": unavailable
                    }
                },
                "get": {
                    "operationId": "readState",
                    "summary": "The read cursor and the number of unread messages",
                    "responses": {
                        "200": json_response("The read state", "ReadState"),
                        "401": unauthenticated, "403": forbidden,
                        "429": rate_limited, "503": unavailable
                    }
                }
            },
            "/v1/typing": {
                "post": {
                    "operationId": "typing",
                    "summary": "The client is typing: the manager of their assigned ticket gets a `typing` event (event_id 0, not resumed); send it every 2 s while typing, more than one per 1.5 s is dropped",
                    "responses": {
                        "204": { "description": "Passed on (or dropped: throttled, or no manager to tell)" },
                        "401": unauthenticated, "403": forbidden,
                        "429": rate_limited, "503": unavailable
                    }
                }
            },
            "/v1/commands": {
                "get": {
                    "operationId": "listCommands",
                    "summary": "The commands of the bank's bot the client may send (`/name args` as a message), in the spec's order: an app offers them as hints. Another `/word` is an ordinary message",
                    "responses": {
                        "200": json_response("The commands", "Commands"),
                        "401": unauthenticated, "403": forbidden,
                        "429": rate_limited, "503": unavailable
                    }
                }
            },
            "/v1/attachments": {
                "post": {
                    "operationId": "uploadAttachment",
                    "summary": "Store a file for the client's next message (its `id` goes in SendMessage's `attachments`; kept a day when no message takes it)",
                    "description": "Accepted types, the size and the number per message are the bank's (channels.yaml `attachments`; by default images, PDF and plain text up to 10 MiB, 5 per message). A file is taken by its content: one whose bytes are not the type it declares is refused. A text file is read by the AFC check with its message: a card number in it (or in a file name) blocks the message, and its file with it.",
                    "requestBody": { "required": true, "content": { "multipart/form-data": {
                        "schema": { "type": "object", "required": ["file"], "properties": {
                            "file": { "type": "string", "format": "binary" } } } } } },
                    "responses": {
                        "201": json_response("Stored", "Attachment"),
                        "400": error_response("Not a multipart body"),
                        "401": unauthenticated, "403": forbidden,
                        "413": error_response("The file is larger than allowed"),
                        "422": error_response("The file is refused (empty, type not accepted, content not of its declared type)"),
                        "429": rate_limited, "503": unavailable
                    }
                }
            },
            "/v1/attachments/{id}": {
                "get": {
                    "operationId": "downloadAttachment",
                    "summary": "A file of the client's chat (never one of a blocked message), or their own upload",
                    "parameters": [
                        { "name": "id", "in": "path", "required": true,
                          "schema": { "type": "string", "format": "uuid" } }
                    ],
                    "responses": {
                        "200": { "description": "The file's bytes (inline for images, a download otherwise)",
                                 "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } },
                        "401": unauthenticated, "403": forbidden,
                        "404": error_response("No such file in the client's chat"),
                        "429": rate_limited, "503": unavailable
                    }
                }
            },
            "/v1/ws": {
                "get": {
                    "operationId": "events",
                    "summary": "WebSocket of the client's events; `after` resumes after the last event_id seen",
                    "description": format!(
                        "Upgrade to a WebSocket. Each text frame is one event: {{type, event_id, \
                         created_at, ...payload}}. Browsers pass the token as `token`. The server \
                         closes with {} when the token expires, {} when the client reads too \
                         slowly, {} when it shuts down and {} when events cannot be read; each \
                         time reconnect with `after=<last event_id>`.",
                        crate::http::CLOSE_TOKEN_EXPIRED,
                        crate::http::CLOSE_TOO_SLOW,
                        crate::http::CLOSE_GOING_AWAY,
                        crate::http::CLOSE_INTERNAL,
                    ),
                    "parameters": [
                        { "name": "token", "in": "query", "required": false, "schema": { "type": "string" } },
                        { "name": "after", "in": "query", "required": false,
                          "schema": { "type": "integer", "format": "int64", "minimum": 0, "default": 0 } }
                    ],
                    "responses": {
                        "101": { "description": "Switching to the WebSocket protocol" },
                        "401": unauthenticated, "403": forbidden, "429": rate_limited,
                        "422": error_response("A negative `after`")
                    }
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": { "200": { "description": "The OpenAPI document" } }
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness",
                    "security": [],
                    "responses": { "200": { "description": "ok" } }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                    "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" },
                        "field": { "type": "string" } } } } },
                "SendMessage": { "type": "object", "additionalProperties": false,
                    "required": ["client_message_id"], "properties": {
                        "body": { "type": "string", "maxLength": 4096,
                                  "description": "Required (not blank) unless `attachments` are given" },
                        "client_message_id": { "type": "string", "format": "uuid" },
                        "attachments": { "type": "array", "items": { "type": "string", "format": "uuid" },
                                         "description": "Ids of the client's uploads, in order" } } },
                "Attachment": { "type": "object", "required": ["id", "name", "content_type", "size"],
                    "properties": {
                        "id": { "type": "string", "format": "uuid" },
                        "name": { "type": "string" },
                        "content_type": { "type": "string" },
                        "size": { "type": "integer" } } },
                "Accepted": { "type": "object", "required": ["message_id"], "properties": {
                    "message_id": { "type": "string", "format": "uuid" } } },
                "ChatMessage": { "type": "object",
                    "required": ["id", "author", "body", "status", "channel", "created_at"], "properties": {
                        "id": { "type": "string", "format": "uuid" },
                        "ticket_id": { "type": ["string", "null"], "format": "uuid" },
                        "author": { "enum": ["client", "manager", "system"] },
                        "body": { "type": "string" },
                        "status": { "enum": ["pending", "delivered", ""],
                                    "description": "For the client's own messages" },
                        "channel": { "type": "string" },
                        "attachments": { "type": "array", "items": { "$ref": "#/components/schemas/Attachment" } },
                        "created_at": { "type": "string", "format": "date-time" } } },
                "HistoryPage": { "type": "object", "required": ["messages", "next_before"], "properties": {
                    "messages": { "type": "array", "items": { "$ref": "#/components/schemas/ChatMessage" } },
                    "next_before": { "type": ["string", "null"],
                                     "description": "Pass as `before` for older messages; null at the start" } } },
                "MarkRead": { "type": "object", "additionalProperties": false, "required": ["message_id"],
                    "properties": { "message_id": { "type": "string", "format": "uuid" } } },
                "Commands": { "type": "object", "required": ["commands"], "properties": {
                    "commands": { "type": "array", "items": { "type": "object",
                        "required": ["name", "description"], "properties": {
                            "name": { "type": "string", "description": "Without the slash" },
                            "description": { "type": "string" } } } } } },
                "ReadState": { "type": "object", "required": ["read_up_to", "unread"], "properties": {
                    "read_up_to": { "type": ["string", "null"], "format": "uuid" },
                    "unread": { "type": "integer" } } }
            }
        }
    })
}
