//! Arbitrary bytes into every decoder of on-disk bytes (requirement A14): each must return,
//! never panic, hang, or allocate without bound. See `diskcache_fuzz::decoders`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    diskcache_fuzz::stats::run_started("decoders");
    diskcache_fuzz::decoders::run(data);
});
