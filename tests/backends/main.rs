//! The store and lock backends against real servers: the same contract suites on every
//! backend, then many replicas, then faults.

mod attempts;
mod cluster;
mod collabora;
mod conformance;
mod contract;
mod faults;
mod races;
mod replicas;
mod servers;
mod share_links;
mod sweep;
mod versions;
