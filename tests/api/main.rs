//! HTTP integration tests: the real app on a random port, a real store in a temp directory.

mod activities;
mod cli;
mod collabora;
mod containers;
mod conversions;
mod file_url;
mod helpers;
mod host_page;
mod openapi;
mod ops;
mod permissions;
mod process;
mod proof;
mod saves;
mod share_controls;
mod share_passwords;
mod share_url;
mod tokens;
mod viewer_session;
mod wopi;
