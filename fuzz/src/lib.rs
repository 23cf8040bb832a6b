//! The fuzz targets' logic, in a library so that the seed generator and the replay tool
//! (`examples/`) use exactly what the targets run.
//!
//! * [`ops`]: operation sequences through the fault-injecting storage, with crashes, I/O
//!   errors and a full disk, checked against a model after every step and every recovery.
//! * [`files`]: a small valid cache directory, damaged file by file, then opened and used.
//! * [`decoders`]: arbitrary bytes into every decoder of on-disk bytes.

pub mod decoders;
pub mod files;
pub mod ops;
pub mod stats;
