//! Integration tests: the real server on a loopback port, real WebSocket, SSE and HTTP clients.

mod alerts;
mod analysis;
mod audit;
mod auth;
mod collector;
mod dashboard;
mod disconnect;
mod errors;
mod history;
mod ingest;
mod jwt;
mod lifecycle;
mod limits;
mod notify;
mod pubsub;
mod resume;
mod rolling;
mod slow;
mod stats;
mod tenancy;
mod tenancy_prop;
mod tls;
