//! End-to-end tests through the HTTP API; each test body runs on SQLite and on PostgreSQL.

mod helpers;

mod access;
mod assessment_api;
mod feed_stream;
mod fuzz;
mod hostile_http;
mod openapi;
mod people;
mod providers;
mod read_api;
mod regional_report;
mod scorecard;
mod series;
mod write_api;
