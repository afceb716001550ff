//! `syncledger worker` processes: runs shared over the NATS JetStream job queue, and runs
//! resumed after a worker died at each of the engine's crash points.

#[path = "workers/crash.rs"]
mod crash;
#[path = "workers/metrics.rs"]
mod metrics;
#[path = "workers/nats.rs"]
mod nats;
#[path = "workers/rollback.rs"]
mod rollback;
