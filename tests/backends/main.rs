//! The store and lock backends against real servers: the same contract suites on every
//! backend, then many replicas, then faults.

mod cluster;
mod conformance;
mod contract;
mod faults;
mod replicas;
mod servers;
mod sweep;
