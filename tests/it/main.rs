//! The single integration-test binary: real servers on loopback, the real agent, the real CLI.

mod access;
mod architecture;
mod cli;
mod config;
mod deploy;
mod dns;
mod domain;
mod examples;
mod faults;
mod flow;
mod hostile;
mod http;
mod labels;
mod page;
mod regions;
mod reload;
mod remote_write;
mod rules;
mod schedule;
mod secrets;
mod server;
mod server_hardening;
mod support;
mod tcp;
mod tls;
mod traffic;
