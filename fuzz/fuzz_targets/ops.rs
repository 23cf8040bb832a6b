//! Operation sequences through the fault-injecting storage, with crashes, I/O errors and a
//! full disk, checked against a model: see `diskcache_fuzz::ops`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(input) = diskcache_fuzz::ops::decode(data) {
        diskcache_fuzz::ops::run(&input);
    }
});
