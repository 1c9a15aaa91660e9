//! Integration tests: the real server on a loopback port, real WebSocket, SSE and HTTP clients.

mod errors;
mod history;
mod ingest;
mod lifecycle;
mod notify;
mod pubsub;
mod resume;
mod slow;
mod stats;
